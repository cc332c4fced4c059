"""The JAX stopper in a real JAX training loop (CPU): a small MLP trained with jax.grad, parameters and a whole
train state kept, resumed, refused when they do not fit."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from earlystop_core import Monitor, StateError, StopReason  # noqa: E402
from earlystop_core.adapters.jax import EarlyStopper  # noqa: E402

EPOCHS = 60


def problem() -> tuple[Any, ...]:
    """A noisy regression a wide MLP overfits: validation loss falls, then rises."""
    key = jax.random.PRNGKey(0)
    kx, kn, _, kw1, kw2 = jax.random.split(key, 5)
    x = jax.random.normal(kx, (48, 4))
    y = x[:, :1] + 0.8 * jax.random.normal(kn, (48, 1))
    params = {
        "w1": 0.5 * jax.random.normal(kw1, (4, 64)),
        "b1": jnp.zeros(64),
        "w2": 0.5 * jax.random.normal(kw2, (64, 1)),
        "b2": jnp.zeros(1),
    }
    return x[:24], y[:24], x[24:], y[24:], params


def loss(params: Any, x: Any, y: Any) -> Any:
    hidden = jax.nn.relu(x @ params["w1"] + params["b1"])
    return jnp.mean((hidden @ params["w2"] + params["b2"] - y) ** 2)


@jax.jit
def train_step(state: Any, x: Any, y: Any) -> Any:
    """Momentum SGD: the state is (params, velocity)."""
    params, velocity = state
    grads = jax.grad(loss)(params, x, y)
    velocity = jax.tree.map(lambda v, g: 0.9 * v + g, velocity, grads)
    return jax.tree.map(lambda p, v: p - 0.05 * v, params, velocity), velocity


def run(stopper: EarlyStopper | None, epochs: int = EPOCHS, state: Any = None) -> tuple[Any, list[Any], list[float]]:
    """Train; returns the final state, the state after every epoch, and the validation losses."""
    x, y, xv, yv, params = problem()
    state = state if state is not None else (params, jax.tree.map(jnp.zeros_like, params))
    history, losses = [], []
    for _ in range(epochs):
        state = train_step(state, x, y)
        history.append(state)
        losses.append(float(loss(state[0], xv, yv)))
        if stopper is not None and stopper.step({"val_loss": loss(state[0], xv, yv)}, state).should_stop:
            break
    return state, history, losses


def same_tree(a: Any, b: Any) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))


@pytest.mark.parametrize("snapshot", ["device", "host"])
def test_stops_as_the_monitor_does_and_hands_back_the_best_train_state(snapshot: str) -> None:
    stopper = EarlyStopper("val_loss", patience=5, restore_best_weights=True, snapshot=snapshot)
    final, history, losses = run(stopper)
    plain = Monitor("val_loss", patience=5, restore_best_weights=True)
    expected_stop = next(epoch for epoch, value in enumerate(losses) if plain.update({"val_loss": value}).should_stop)
    assert stopper.monitor.stopped_epoch == expected_stop < EPOCHS - 1
    assert stopper.monitor.stop_reason is StopReason.PATIENCE_EXHAUSTED
    best = stopper.monitor.best_epoch
    assert best == plain.best_epoch and best < expected_stop
    result = stopper.result(final)
    same_tree(result, history[best])  # the parameters and the optimizer's velocity of the best epoch
    assert isinstance(jax.tree.leaves(result)[0], jax.Array)
    assert float(loss(result[0], *problem()[2:4])) == min(losses)


def test_without_a_stop_the_best_comes_back_at_the_end_and_without_restore_the_last() -> None:
    stopper = EarlyStopper("val_loss", patience=100, restore_best_weights=True)
    final, history, losses = run(stopper, epochs=EPOCHS)
    assert stopper.monitor.stopped_epoch is None
    same_tree(stopper.result(final), history[int(np.argmin(losses))])
    keep_last = EarlyStopper("val_loss", patience=3)
    final, _, _ = run(keep_last)
    assert keep_last.best is None and stopper.best is not None
    same_tree(keep_last.result(final), final)


def test_a_resumed_loop_decides_and_restores_as_an_uninterrupted_one() -> None:
    whole = EarlyStopper("val_loss", patience=5, restore_best_weights=True)
    final_whole, _, _ = run(whole)
    first = EarlyStopper("val_loss", patience=5, restore_best_weights=True)
    state, _, _ = run(first, epochs=8)
    saved = pickle.loads(pickle.dumps(first.state_dict()))  # as a user's checkpoint would carry it
    assert all(isinstance(leaf, np.ndarray) for leaf in jax.tree.leaves(saved["best"]))
    resumed = EarlyStopper("val_loss", patience=5, restore_best_weights=True)
    resumed.load_state_dict(saved, like=state)
    x, y, xv, yv, _ = problem()
    for _ in range(EPOCHS - 8):
        state = train_step(state, x, y)
        if resumed.step({"val_loss": loss(state[0], xv, yv)}, state).should_stop:
            break
    assert (resumed.monitor.stopped_epoch, resumed.monitor.best_epoch) == (
        whole.monitor.stopped_epoch,
        whole.monitor.best_epoch,
    )
    same_tree(resumed.result(state), whole.result(final_whole))


def test_a_state_that_does_not_fit_is_refused_and_changes_nothing() -> None:
    stopper = EarlyStopper("val_loss", patience=5, restore_best_weights=True)
    state, _, _ = run(stopper, epochs=4)
    saved = stopper.state_dict()
    other = EarlyStopper("val_loss", patience=5, restore_best_weights=True)
    before = other.monitor.state_dict()
    smaller = (dict(state[0], w1=state[0]["w1"][:, :8]), state[1])
    with pytest.raises(StateError, match="leaf"):
        other.load_state_dict(saved, like=smaller)
    with pytest.raises(StateError, match="structure"):
        other.load_state_dict(saved, like=state[0])
    with pytest.raises(StateError, match="not a"):
        other.load_state_dict({"monitor": saved["monitor"]}, like=state)
    assert other.monitor.state_dict() == before and other.best is None
    with pytest.raises(ValueError, match="snapshot"):
        EarlyStopper("val_loss", snapshot="disk")
    with pytest.raises(ValueError, match="not both"):
        EarlyStopper(Monitor("val_loss"), patience=3)


def test_a_failed_copy_leaves_the_monitor_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    stopper = EarlyStopper("val_loss", patience=5, restore_best_weights=True)
    run(stopper, epochs=3)
    before, kept = stopper.monitor.state_dict(), stopper.best

    def out_of_memory(tree: Any) -> Any:
        raise MemoryError("injected")

    monkeypatch.setattr(stopper, "_copy", out_of_memory)
    with pytest.raises(MemoryError):
        stopper.step({"val_loss": -1.0}, {"w": jnp.zeros(2)})  # an improvement whose copy fails
    assert stopper.monitor.state_dict() == before and stopper.best is kept
