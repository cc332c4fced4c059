"""Replays drawn with matplotlib (the ``plot`` extra, imported only when drawing): one run as a stopping rule
replayed it, and the trade-off of epochs saved against regret that ``earlystop tune --plot`` shows."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["draw_front", "draw_run"]


def draw_run(curve: Mapping[str, Sequence[float | None]], result: Any, config: Any, title: str) -> Any:
    """One run drawn as replayed: the monitored metric (and its training twin), the metric the weights were
    kept by on a second axis when it is another, and the kept and stop epochs marked as decided.

    Losses spanning more than a decade are drawn on a log scale; a metric logged every few epochs is drawn
    through the epochs it was logged at, each marked.
    """
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=(8, 4.8))
    monitor = config.monitor if isinstance(config.monitor, str) else config.name
    for name in dict.fromkeys((monitor, monitor.removeprefix("val_"))):
        if name in curve:
            axes.plot(*_logged_points(curve[name]), label=name, marker="." if None in curve[name] else None)
    logged = [v for v in curve.get(monitor, ()) if v is not None and math.isfinite(v)]
    if config.mode == "min" and logged and min(logged) > 0 and max(logged) / min(logged) > 10:
        axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel(monitor)
    kept_by = config.keep_best_by
    handles, labels = [], []
    if kept_by is not None and kept_by in curve:
        other = axes.twinx()
        marker = "." if None in curve[kept_by] else None
        other.plot(*_logged_points(curve[kept_by]), color="C4", label=kept_by, alpha=0.8, marker=marker)
        other.set_ylabel(kept_by)
        handles, labels = other.get_legend_handles_labels()
    which = kept_by if kept_by is not None else monitor
    kept = f"kept: epoch {result.kept} (best {which} until the stop)"
    axes.axvline(result.kept, color="C2", linestyle="--", label=kept)
    if result.stopped:
        axes.axvline(result.stop, color="C3", linestyle=":", label=f"stopped: epoch {result.stop}")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    own_handles, own_labels = axes.get_legend_handles_labels()
    axes.legend(own_handles + handles, own_labels + labels)
    figure.tight_layout()
    return figure


def _logged_points(values: Sequence[float | None]) -> tuple[list[int], list[float]]:
    """The epochs a metric was logged at, and its values there: validation every few epochs is drawn as a line
    through its checks (with None as gaps, every other epoch would leave no two points to join).

    Examples:
        >>> _logged_points([None, 0.9, None, 0.7])
        ([1, 3], [0.9, 0.7])
    """
    logged = [(epoch, value) for epoch, value in enumerate(values) if value is not None]
    return [epoch for epoch, _ in logged], [value for _, value in logged]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise OSError("plotting needs matplotlib: pip install 'earlystop[plot]'") from None
    return pyplot


def draw_front(rows: Sequence[Mapping[str, Any]], front: Sequence[Mapping[str, Any]], pick: Mapping[str, Any]) -> Any:
    """Every candidate's epochs saved against its regret, the Pareto front joined and labelled, the pick marked."""
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    axes.scatter(
        [100 * r["epochs_saved"] for r in rows], [r["regret"] for r in rows], s=14, color="0.6", label="candidates"
    )
    axes.plot([100 * r["epochs_saved"] for r in front], [r["regret"] for r in front], "o-", color="C0", label="front")
    axes.scatter([100 * pick["epochs_saved"]], [pick["regret"]], s=80, color="C3", zorder=3, label="recommended")
    for index, row in enumerate(front):  # labels above and below by turns: neighbouring points' labels apart
        axes.annotate(row["strategy"], (100 * row["epochs_saved"], row["regret"]), fontsize=7,
                      xytext=(4, 4 if index % 2 == 0 else -10), textcoords="offset points")  # fmt: skip
    axes.set_xlabel("epochs saved (%)")
    axes.set_ylabel("regret (target units)")
    axes.set_title("Epochs saved against regret")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure
