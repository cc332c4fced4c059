"""The Keras callback is Keras-shaped down to the attributes: Keras's own test file, and every attribute read
and assigned beside Keras's own ``EarlyStopping`` in real fits (torch backend)."""

from __future__ import annotations

import importlib.util
import os
import sys
import unittest
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")  # Keras's own marks
keras = pytest.importorskip("keras")

from earlystop_core.adapters.keras import EarlyStoppingCallback  # noqa: E402

#: Keras's import line in its test file, and ours in its place (the only change).
KERAS_IMPORT = "from keras.src import callbacks\n"
OUR_IMPORT = (
    "from earlystop_core.adapters import keras as _earlystop\n\n\n"
    "class callbacks:  # noqa: N801\n"
    "    EarlyStopping = _earlystop.EarlyStoppingCallback\n"
)
#: Keras's public attributes of its EarlyStopping after a fit.
ATTRIBUTES = (
    "monitor", "mode", "min_delta", "patience", "baseline", "restore_best_weights", "start_from_epoch", "verbose",
    "best", "wait", "best_epoch", "stopped_epoch", "monitor_op",
)  # fmt: skip


def test_keras_own_early_stopping_tests_pass_with_only_the_import_changed(tmp_path: Path) -> None:
    source = Path(keras.__file__).parent / "src" / "callbacks" / "early_stopping_test.py"
    text = source.read_text()
    assert text.count(KERAS_IMPORT) == 1, "Keras's test file changed its import: look again"
    path = tmp_path / "keras_early_stopping_test.py"
    path.write_text(text.replace(KERAS_IMPORT, OUR_IMPORT))
    spec = importlib.util.spec_from_file_location("keras_early_stopping_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        assert module.callbacks.EarlyStopping is EarlyStoppingCallback
        suite = unittest.TestLoader().loadTestsFromModule(module)
        result = unittest.TestResult()
        suite.run(result)
    finally:
        del sys.modules[spec.name]
    problems = [f"{test}: {trace}" for test, trace in result.failures + result.errors]
    assert not problems, "\n".join(problems)
    assert result.testsRun == 7 and not result.skipped


class Assign(keras.callbacks.Callback):  # type: ignore[misc]
    """Assigns attributes of another callback at the end of one epoch (before that callback's own end)."""

    def __init__(self, target: Any, epoch: int, changes: dict[str, Any]) -> None:
        super().__init__()
        self.target, self.epoch, self.changes = target, epoch, changes

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch == self.epoch:
            for name, value in self.changes.items():
                setattr(self.target, name, value(self.target) if callable(value) else value)


def fit(callback: Any, before: dict[str, Any] | None = None, during: tuple[int, dict[str, Any]] | None = None) -> Any:
    """A seeded fit; ``before``: attributes assigned after construction; ``during``: at one epoch's end."""
    for name, value in (before or {}).items():
        setattr(callback, name, value)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x[:, :1] + 0.5 * rng.normal(size=(64, 1))).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.05), loss="mse", metrics=["mae"])
    callbacks = [callback] if during is None else [Assign(callback, *during), callback]
    history = model.fit(
        x[:32], y[:32], validation_data=(x[32:], y[32:]), epochs=30, batch_size=8, shuffle=False,
        callbacks=callbacks, verbose=0,
    )  # fmt: skip
    return len(history.epoch), model.get_weights()


def same_attributes(ours: EarlyStoppingCallback, theirs: Any) -> None:
    for name in ATTRIBUTES:
        mine, keras_value = getattr(ours, name), getattr(theirs, name)
        if name == "min_delta":  # Keras flips its sign once it knows the mode is "min"; the size is the setting
            mine, keras_value = abs(mine), abs(keras_value)
        if name == "best" and keras_value is not None:
            keras_value = float(keras_value)
        assert mine == keras_value, f"{name}: ours {mine!r}, Keras {keras_value!r}"


CASES = [
    ({"patience": 2}, {}, None),
    ({"patience": 2, "restore_best_weights": True}, {"patience": 5}, None),
    ({"patience": 2}, {"min_delta": 0.05, "restore_best_weights": True}, None),
    ({}, {"baseline": 0.3, "patience": 3, "restore_best_weights": True}, None),
    ({"patience": 1}, {"start_from_epoch": 4, "monitor": "val_mae"}, None),
    ({"patience": 2, "restore_best_weights": True}, {}, (4, {"patience": 6})),
    ({"patience": 2, "restore_best_weights": True}, {}, (5, {"wait": 0})),
    ({"patience": 3, "restore_best_weights": True}, {}, (3, {"best": lambda cb: cb.best * 0.5})),
    ({"patience": 3}, {}, (3, {"min_delta": 0.02, "baseline": 0.1})),
    ({"patience": 2, "restore_best_weights": True}, {}, (2, {"best_epoch": 1, "stopped_epoch": 0})),
]


@pytest.mark.parametrize(("arguments", "before", "during"), CASES, ids=[str(case) for case in CASES])
def test_attributes_read_and_assigned_as_in_keras(
    arguments: dict[str, Any], before: dict[str, Any], during: tuple[int, dict[str, Any]] | None
) -> None:
    theirs = keras.callbacks.EarlyStopping(**arguments)
    ours = EarlyStoppingCallback(**arguments)
    for name in ("monitor", "mode", "min_delta", "patience", "baseline", "restore_best_weights", "verbose"):
        assert getattr(ours, name) == getattr(theirs, name), name
    ran_keras, weights_keras = fit(theirs, before, during)
    ran_ours, weights_ours = fit(ours, before, during)
    assert ran_ours == ran_keras
    for mine, keras_weights in zip(weights_ours, weights_keras, strict=True):
        np.testing.assert_array_equal(mine, keras_weights)
    same_attributes(ours, theirs)


def test_an_assignment_that_cannot_hold_raises_and_changes_nothing() -> None:
    callback = EarlyStoppingCallback(patience=2)
    with pytest.raises(ValueError, match="patience"):
        callback.patience = -1
    assert callback.patience == 2 and callback.core.config.patience == 2
    with pytest.raises(TypeError, match=r"keras\.ops\.less"):
        callback.monitor_op = np.less_equal
    callback.monitor_op = keras.ops.greater  # Keras's way of saying mode="max"
    assert callback.core.mode == "max" and callback.monitor_op is keras.ops.greater
    with pytest.raises(ValueError, match="during training"):
        fit(EarlyStoppingCallback(patience=2), during=(2, {"restore_best_weights": True}))
    with pytest.raises(ValueError, match="no best epoch to give it"):  # an assigned best reaches the Monitor
        fit(EarlyStoppingCallback(patience=2), during=(0, {"best": 0.5}))


def test_a_setting_assigned_between_fits_takes_effect_in_the_next() -> None:
    callback = EarlyStoppingCallback(patience=1)
    short, _ = fit(callback)
    callback.patience = 8
    longer, _ = fit(callback)
    assert longer > short
    assert callback.core.config.patience == 8


@pytest.mark.parametrize(("freq", "patience"), [(2, 2), (3, 1)])
def test_validation_every_few_epochs_counts_checks_as_keras_does(freq: int, patience: int) -> None:
    """With ``validation_freq`` the epochs without ``val_loss`` are skipped: patience counts validation checks."""

    def run(callback: Any) -> tuple[int, list[np.ndarray]]:
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 8)).astype("float32")
        y = (x[:, :1] + 0.5 * rng.normal(size=(64, 1))).astype("float32")
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.05), loss="mse")
        with pytest.warns(UserWarning, match="val_loss"):  # both warn on the epochs without validation
            history = model.fit(
                x[:32], y[:32], validation_data=(x[32:], y[32:]), validation_freq=freq, epochs=40, batch_size=8,
                shuffle=False, callbacks=[callback], verbose=0,
            )  # fmt: skip
        return len(history.epoch), model.get_weights()

    ran_keras, weights_keras = run(keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True))
    ran_ours, weights_ours = run(EarlyStoppingCallback(patience=patience, restore_best_weights=True))
    assert ran_ours == ran_keras < 40
    for mine, theirs in zip(weights_ours, weights_keras, strict=True):
        np.testing.assert_array_equal(mine, theirs)
