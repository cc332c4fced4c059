"""Which way is better for a metric: inferred from its name for ``mode="auto"``.

Keras infers only ``loss`` and otherwise asks compiled metric objects, which a
framework-agnostic monitor does not have; Lightning does not infer at all. We
read the metric's name word by word, the last known word deciding (so
``dice_loss`` is minimised although ``dice`` alone is maximised), and refuse to
guess when no word is known.
"""

from __future__ import annotations

import re
from typing import Literal

Mode = Literal["min", "max"]
MODES = ("auto", "min", "max")

_LOWER_IS_BETTER = frozenset(
    [
        "loss",
        "losses",
        "error",
        "errors",
        "err",
        "mse",
        "mae",
        "rmse",
        "msle",
        "rmsle",
        "mape",
        "smape",
        "perplexity",
        "ppl",
        "nll",
        "crossentropy",
        "xent",
        "hinge",
        "kld",
        "kl",
        "divergence",
        "huber",
        "logcosh",
        "wer",
        "cer",
        "ter",
        "bpc",
        "bpd",
        "fid",
        "lpips",
        "brier",
        "distance",
        "regret",
        "latency",
    ]
)
_HIGHER_IS_BETTER = frozenset(
    [
        "acc",
        "accuracy",
        "auc",
        "auroc",
        "auprc",
        "roc",
        "ap",
        "map",
        "f1",
        "fbeta",
        "f2",
        "precision",
        "recall",
        "sensitivity",
        "specificity",
        "iou",
        "miou",
        "jaccard",
        "dice",
        "r2",
        "bleu",
        "rouge",
        "rougel",
        "meteor",
        "chrf",
        "psnr",
        "ssim",
        "mcc",
        "kappa",
        "ndcg",
        "mrr",
        "hits",
        "hitrate",
        "reward",
        "return",
        "top1",
        "top5",
        "explained",
        "matthews",
        "pearson",
        "spearman",
        "correlation",
    ]
)
_PREFIXES = ("validation_", "valid_", "val_", "eval_", "test_", "train_", "val/", "train/")
_SEPARATOR = re.compile(r"[^a-z0-9]+")


def infer_mode(monitor: str) -> Mode:
    """Return ``"min"`` or ``"max"`` for a metric name, or raise ``ValueError``.

    Examples:
        >>> infer_mode("val_loss"), infer_mode("val_sparse_categorical_accuracy")
        ('min', 'max')
        >>> infer_mode("val_dice_loss")
        'min'
    """
    name = monitor.lower()
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    name = name.replace("io_u", "iou")  # Keras spells IoU metrics "mean_io_u"
    for word in reversed(_SEPARATOR.split(name)):
        if word in _LOWER_IS_BETTER:
            return "min"
        if word in _HIGHER_IS_BETTER:
            return "max"
    raise ValueError(
        f"mode='auto' cannot tell whether {monitor!r} should go down or up: no word "
        "of its name is a known metric. Pass mode='min' if lower is better (like a "
        "loss) or mode='max' if higher is better (like an accuracy)."
    )


def resolve_mode(mode: object, monitor: str) -> Mode:
    """Validate ``mode`` and resolve ``"auto"`` from the metric name.

    Examples:
        >>> resolve_mode("auto", "val_accuracy")
        'max'
        >>> resolve_mode("mni", "val_loss")
        Traceback (most recent call last):
        ...
        ValueError: mode must be one of 'auto', 'min', 'max', got 'mni'
    """
    if mode == "min":
        return "min"
    if mode == "max":
        return "max"
    if mode == "auto":
        return infer_mode(monitor)
    raise ValueError(f"mode must be one of 'auto', 'min', 'max', got {mode!r}")


def held_out(name: str) -> bool:
    """Whether a metric's name says it is measured on data held out from training (validation or test).

    Examples:
        >>> held_out("val_loss"), held_out("eval/accuracy"), held_out("loss_val"), held_out("train_loss")
        (True, True, True, False)
    """
    return bool(set(re.split(r"[_/.\- ]+", name.lower())) & {"val", "valid", "validation", "eval", "test"})
