"""Hugging Face ``Trainer`` binding: ``EarlyStoppingCallback``, deciding at every evaluation with a Monitor.

All decisions are the Monitor's; the PyTorch [`EarlyStopper`][adapters.torch.EarlyStopper]
keeps the best weights (in memory, no checkpoint needed) and restores them when training ends.
This callback only reads the evaluation metrics, asks the Trainer to stop, and carries its state
through the Trainer's checkpoints.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from earlystop_core import Monitor, StateError
from earlystop_core._files import write_atomically

from . import _optimizer as optim
from .torch import EarlyStopper

__all__ = ["BEST_FILE", "EarlyStoppingCallback"]

log = logging.getLogger(__name__)

#: The file beside each checkpoint holding this callback's best weights and state (``torch.save``).
BEST_FILE = "earlystop.pt"


class EarlyStoppingCallback(TrainerCallback, ExportableState):
    """Stop a ``transformers.Trainer`` when the evaluation metric stops improving; keep and restore its best weights.

    A drop-in for Hugging Face's ``EarlyStoppingCallback`` (``early_stopping_patience``,
    ``early_stopping_threshold``) that needs neither ``load_best_model_at_end`` nor a matching
    save strategy: the best weights are snapshotted in memory at each improvement and put back
    when training ends (``restore_best_weights=False`` to leave the last weights). It decides at
    every evaluation, epoch or step strategy; patience counts evaluations.

    Args:
        early_stopping_patience: Evaluations without improvement before stopping (Hugging Face's
            name; the Monitor's ``patience``). Default 1, as Hugging Face's.
        early_stopping_threshold: The improvement that counts (the Monitor's ``min_delta``, Keras's
            rule: a best moves only by more than it, so small steps add up; see the migration guide).
        monitor: The metric (``"eval_loss"``), or a ready [`Monitor`][earlystop_core.Monitor]. By default
            ``metric_for_best_model`` of the ``TrainingArguments`` (``eval_`` prepended, its direction
            ``greater_is_better``), else ``"eval_loss"``.
        restore_best_weights: Keep the best weights and load them back at the end of training.
        snapshot: Where the best weights are kept: ``"device"``, ``"cpu"`` or ``"disk"`` (with ``path``).
        **options: Any other Monitor argument (``mode``, ``rule``, ``policy``, ``on_missing``...) and
            the EarlyStopper's ``path`` and ``snapshot_optimizer``.

    Resuming (``trainer.train(resume_from_checkpoint=...)``) continues the decisions where the
    checkpoint left them: the Monitor's state travels in the checkpoint's ``trainer_state.json``
    (``stateful_callbacks``) and the best weights in `BEST_FILE` beside it; no
    ``restore_callback_states_from_checkpoint`` is needed.
    """

    def __init__(
        self,
        early_stopping_patience: int | None = None,
        early_stopping_threshold: float | None = None,
        *,
        monitor: str | Monitor | None = None,
        restore_best_weights: bool = True,
        snapshot: str = "device",
        **options: Any,
    ) -> None:
        stopper_options: dict[str, Any] = {
            name: options.pop(name) for name in ("path", "snapshot_optimizer") if name in options
        }
        if isinstance(monitor, Monitor):
            given = [name for name, value in (("early_stopping_patience", early_stopping_patience),
                     ("early_stopping_threshold", early_stopping_threshold)) if value is not None]  # fmt: skip
            if given or options or restore_best_weights is not True:
                extra = given + sorted(options) + ([] if restore_best_weights is True else ["restore_best_weights"])
                raise TypeError(f"pass the settings to the Monitor, not beside it: {', '.join(extra)}")
            arguments: dict[str, Any] = {}
        else:
            for ours, theirs in (("patience", "early_stopping_patience"), ("min_delta", "early_stopping_threshold")):
                if ours in options:
                    raise TypeError(f"{ours}= is {theirs}= here (Hugging Face's name)")
            arguments = {
                "patience": 1 if early_stopping_patience is None else early_stopping_patience,
                "min_delta": early_stopping_threshold or 0.0,
                "restore_best_weights": restore_best_weights,
                **options,
            }
            checked: dict[str, Any] = {"mode": "min", **arguments}
            Monitor(monitor or "eval_loss", **checked)  # every argument checked now
        self._monitor, self._arguments = monitor, arguments
        self._name: str | None = None if isinstance(monitor, Monitor) else monitor
        self._stopper_options: dict[str, Any] = {"snapshot": snapshot, **stopper_options}
        self._stopper: EarlyStopper | None = None
        self._saved: dict[str, Any] | None = None  # a state handed over by the Trainer, for the next train()
        self._training = False

    @property
    def core(self) -> Monitor:
        """The Monitor making the decisions (built when training begins, from the TrainingArguments)."""
        if self._stopper is None:
            raise RuntimeError("the Monitor is built when training begins (it may read metric_for_best_model)")
        return self._stopper.monitor

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self._stopper is not None:
            self._stopper.close()
        monitor = self._monitor if isinstance(self._monitor, Monitor) else self._build(args)
        self._stopper = EarlyStopper(model, monitor, **self._stopper_options)
        self._stopper.reset()
        saved = self._saved if self._saved is not None else _stateful(state, type(self).__name__)
        self._saved = None
        if state.global_step > 0 and saved is not None:  # resuming from a checkpoint this callback saved in
            self._resume(saved, _checkpoint(args, state) / BEST_FILE)
        self._training = True

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        if not self._training or self._stopper is None:  # trainer.evaluate() outside train(): nothing to decide
            return
        metrics = dict(metrics or {})
        metrics.update(optim.rates(self.core.rule, metrics, kwargs.get("optimizer")))  # a learned policy's lr
        decision = self._stopper.step(metrics)
        if decision.should_stop:
            control.should_training_stop = True  # never set back to False: that could cancel another stop
            log.info("early stopping: %s", decision.message)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._training or self._stopper is None or not self.core.restore_best_weights:
            return
        folder = _checkpoint(args, state)
        if folder.is_dir():  # beside the checkpoint the Trainer has just written (its state has ours)
            saved = self._stopper.state_dict()
            write_atomically(folder / BEST_FILE, lambda stream: torch.save(saved, stream))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._training = False
        if self._stopper is not None:
            try:
                self._stopper.finish()  # restores the best weights unless a stop already did
            finally:
                self._stopper.close()

    def state(self) -> dict[str, Any]:
        """What the Trainer keeps in a checkpoint's ``trainer_state.json`` (Hugging Face's ``ExportableState``).

        ``args`` rebuild this callback when they can (settings that are plain JSON), for a Trainer
        told to ``restore_callback_states_from_checkpoint``; the Monitor's state is in ``attributes``.
        """
        return {"args": self._json_arguments(), "attributes": {"earlystop_state": self.earlystop_state}}

    @property
    def earlystop_state(self) -> dict[str, Any] | None:
        """The Monitor's state, for ``ExportableState`` (assigned by a Trainer restoring callbacks)."""
        return None if self._stopper is None else self.core.state_dict()

    @earlystop_state.setter
    def earlystop_state(self, saved: dict[str, Any] | None) -> None:
        self._saved = saved  # applied (and checked) when the resumed training begins

    def _build(self, args: Any) -> Monitor:
        """The Monitor of this callback's arguments, naming the metric from the TrainingArguments if not given."""
        options = dict(self._arguments)
        name = self._name
        if name is None and args.metric_for_best_model:
            name = args.metric_for_best_model
            name = name if name.startswith("eval_") else f"eval_{name}"
            if "mode" not in options and args.greater_is_better is not None:
                options["mode"] = "max" if args.greater_is_better else "min"
        return Monitor(name or "eval_loss", **options)

    def _resume(self, saved: dict[str, Any], best_file: Path) -> None:
        """Continue from a checkpoint: the Monitor's state ``saved``, and the best weights saved beside it."""
        assert self._stopper is not None
        if not self.core.restore_best_weights:
            self.core.load_state_dict(saved)
            return
        if not best_file.is_file():
            raise StateError(
                f"resuming from a checkpoint without {best_file.name}, the best weights this callback keeps: "
                f"{best_file.parent} was not saved with it"
            )
        whole = torch.load(best_file, map_location="cpu", weights_only=True)
        if whole.get("monitor") != saved:
            raise StateError(f"{best_file} belongs to another save than {best_file.parent}'s trainer_state.json")
        self._stopper.load_state_dict(whole)

    def _json_arguments(self) -> dict[str, Any]:
        """The constructor's arguments, if they are plain JSON (a Rule or a Monitor is not): else none."""
        if isinstance(self._monitor, Monitor):
            return {}
        arguments = {"monitor": self._name, **self._arguments, **self._stopper_options}
        patience, threshold = arguments.pop("patience"), arguments.pop("min_delta")
        arguments = {"early_stopping_patience": patience, "early_stopping_threshold": threshold, **arguments}
        try:
            return dict(json.loads(json.dumps(arguments, allow_nan=False)))
        except (TypeError, ValueError):
            return {}


def _stateful(state: Any, name: str) -> dict[str, Any] | None:
    """The Monitor's state this callback left in a TrainerState's ``stateful_callbacks`` (the first, if several);
    None when there is none (also when it was saved before this callback's first training began)."""
    saved = (getattr(state, "stateful_callbacks", None) or {}).get(name)
    if isinstance(saved, list):
        saved = saved[0] if saved else None
    attributes = saved.get("attributes") if isinstance(saved, dict) else None
    return attributes.get("earlystop_state") if isinstance(attributes, dict) else None


def _checkpoint(args: Any, state: Any) -> Path:
    """The folder of the Trainer's checkpoint at this step (where this callback keeps its best weights)."""
    return Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
