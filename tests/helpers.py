"""Helpers shared by the test modules (``from helpers import same``: pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hypothesis import strategies as st

from earlystop_core import Decision, Rule
from earlystop_core.replay import engine as engine_module


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN, element-wise for tuples (Decisions); ``None`` equals only ``None``.

    Examples:
        >>> same((1.0, float("nan")), (1.0, float("nan"))), same(None, 0.0)
        (True, False)
    """
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


@contextlib.contextmanager
def groups_of(runs: int) -> Iterator[None]:
    """The vectorised engine replays at most ``runs`` runs together (a large bank's memory bound), for a while."""
    default = engine_module.GROUP
    engine_module.GROUP = runs
    try:
        yield
    finally:
        engine_module.GROUP = default


def assert_same_decisions(actual: Sequence[Decision], expected: Sequence[Decision]) -> None:
    """Two runs' decisions, equal one by one (NaN equal to NaN)."""
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert same(got, want), f"\n got: {got!r}\nwant: {want!r}"


def strict_json(state: dict[str, Any]) -> dict[str, Any]:
    """Round trip through JSON without NaN/Infinity tokens (raises if any)."""
    loaded: dict[str, Any] = json.loads(json.dumps(state, allow_nan=False))
    return loaded


# -- values for the differential tests against Keras and Lightning --------------------------

SPELLINGS = ("product", "decimal", "sum")
#: Doubles, and the float32-wide floats a real ``fit()`` logs (plain doubles test our rounding).
arbitrary_values = st.floats(-100, 100, allow_nan=False) | st.floats(-100, 100, allow_nan=False, width=32)


def on_grid(k: int, step: float, spelling: str) -> float:
    """``k * step`` spelt three ways: each carries different float64 noise.

    Users' values are rarely exact decimals, and the noise (``0.1 * 3`` is
    ``0.30000000000000004``) is what float32 comparisons must absorb for ties
    and ``x + min_delta`` near-ties to come out as the peers' do.

    Examples:
        >>> [on_grid(3, 0.1, spelling) for spelling in SPELLINGS]
        [0.30000000000000004, 0.3, 0.30000000000000004]
    """
    if spelling == "product":
        return k * step
    if spelling == "decimal":
        return round(k * step, 10)
    total = 0.0
    for _ in range(abs(k)):
        total += step
    return total if k >= 0 else -total


def grid_values(
    step: float, lowest: int = -10, highest: int = 30, spellings: Sequence[str] = SPELLINGS
) -> st.SearchStrategy[float]:
    """``k * step`` for ``k`` from ``lowest`` to ``highest``, spelt one of ``spellings`` (see :func:`on_grid`)."""
    return st.builds(on_grid, st.integers(lowest, highest), st.just(step), st.sampled_from(spellings))


Grid = Callable[[float], st.SearchStrategy[float]]


def any_finite_value(grid: Grid, steps: Sequence[float]) -> st.SearchStrategy[float]:
    """A value on the grid of one of ``steps``, or an arbitrary one."""
    return st.sampled_from(steps).flatmap(grid) | arbitrary_values


def finite_runs(grid: Grid, steps: Sequence[float], max_size: int) -> st.SearchStrategy[list[float]]:
    """Runs of values all on one step's grid, of arbitrary values, or of a pool of 1-3 values drawn again and again.

    The pool gives exact repeats, plateaus and exact ties: the epochs where
    the strictness of a comparison decides.
    """
    on_a_grid = st.sampled_from(steps).flatmap(lambda step: st.lists(grid(step), min_size=1, max_size=max_size))
    arbitrary = st.lists(arbitrary_values, min_size=1, max_size=max_size)
    repeated = st.lists(any_finite_value(grid, steps), min_size=1, max_size=3).flatmap(
        lambda pool: st.lists(st.sampled_from(pool), min_size=1, max_size=max_size)
    )
    return on_a_grid | arbitrary | repeated


def fit_tiny_lightning_model(logger: Any, max_epochs: int, val_on_step: bool = False, **trainer_options: Any) -> None:
    """A real ``Trainer.fit`` of a one-layer regression, logging ``train_loss`` (per epoch) and ``val_loss`` (also
    per validation step with ``val_on_step``: then ``val_loss_step`` and ``val_loss_epoch``)."""
    import warnings

    import pytorch_lightning as lightning
    import torch

    class Tiny(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, _: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, _: int) -> None:
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y), on_step=val_on_step, on_epoch=True)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.02)

    torch.manual_seed(0)
    x = torch.randn(64, 4)
    data = torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True) + 0.3 * torch.randn(64, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=16)
    trainer = lightning.Trainer(
        max_epochs=max_epochs,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **trainer_options,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers and the like
        trainer.fit(Tiny(), loader, loader)


def tiny_keras_regression(keras: Any, rows: int, learning_rate: float) -> tuple[Any, Any, Any]:
    """A compiled one-layer Keras regression (seeded) and its data, ``(model, x, y)``: y is the sum of x's 4 columns."""
    import numpy as np

    x = np.random.default_rng(0).normal(size=(rows, 4)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    return model, x, x.sum(axis=1, keepdims=True)


def tiny_bert_config(transformers: Any) -> Any:
    """The config of a BERT small enough to train on a CPU in seconds, built without any download."""
    return transformers.BertConfig(
        vocab_size=32,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=2,
        max_position_embeddings=16,
    )


class RateSeen(Rule):
    """A rule that never stops and records the learning rate it is given (``lr``, read when logged, as a learned
    policy reads it): what an adapter hands a rule that reads the rate."""

    optional = frozenset({"lr"})

    def __init__(self) -> None:
        self.seen: list[float | None] = []

    def check(self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Any) -> bool:
        self.seen.append(logs.get("lr"))
        return False

    def spec(self) -> dict[str, Any]:
        return {"rule": "RateSeen"}
