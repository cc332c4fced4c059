"""``earlystop tune PATH --learn policy.json``: fit a stopping policy on the user's own runs.

Not wired into ``earlystop`` yet: :func:`add_tune_command` and :func:`run_tune`
are what ``earlystop_core.cli`` needs to call; ``python -m
earlystop_core.policy_cli PATH --learn policy.json`` runs it meanwhile.

``PATH`` is a long CSV of curves (``run,epoch,<metrics>``, optionally
gzipped) or a directory holding ``curves.csv.gz`` (or ``curves.csv``) and,
optionally, ``runs.csv`` (its ``problem`` column groups the runs for
cross-validation, its ``epochs`` column gives each run's budget).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from earlystop_core.curves import load_curves
from earlystop_core.policy import fit_policy

__all__ = ["add_tune_command", "main", "run_tune"]


def add_tune_command(parser: argparse.ArgumentParser) -> None:
    """Add the ``tune`` arguments to ``parser`` (a sub-command's parser, or a standalone one)."""
    parser.add_argument("path", type=Path, help="curves CSV (run,epoch,metrics...) or a directory with curves.csv.gz")
    parser.add_argument("--learn", type=Path, required=True, metavar="POLICY_JSON", help="where to write the policy")
    parser.add_argument("--runs", type=Path, default=None, help="runs.csv (default: next to the curves, if there)")
    parser.add_argument("--monitor", default="val_loss", help="the monitored metric (default val_loss)")
    parser.add_argument("--target", default="test_accuracy", help="the metric regret is measured on")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--max-regret", type=float, default=None, help="allowed mean regret (default 0.0007)")
    budget.add_argument("--match-patience", type=int, default=None, help="allow the regret of this fixed patience")
    parser.add_argument("--best-from-epoch", type=int, default=0, help="the Monitor's best_from_epoch")
    parser.add_argument("--no-budget", action="store_true", help="do not use the epoch budget as a feature")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")


def run_tune(args: argparse.Namespace) -> int:
    """Fit, save and summarise; returns the exit status."""
    path: Path = args.path
    curves_path = path
    if path.is_dir():
        found = [path / name for name in ("curves.csv.gz", "curves.csv") if (path / name).exists()]
        if not found:
            raise FileNotFoundError(f"{path} holds neither curves.csv.gz nor curves.csv")
        curves_path = found[0]
    runs = args.runs if args.runs is not None else curves_path.parent / "runs.csv"
    if args.runs is not None and not runs.exists():
        raise FileNotFoundError(f"no runs file {runs}")
    curves = load_curves(curves_path)
    if args.max_regret is None and args.match_patience is None:
        max_regret: float | None = 0.0007
    else:
        max_regret = args.max_regret
    policy = fit_policy(
        curves,
        runs if runs.exists() else None,
        monitor=args.monitor,
        target=args.target,
        budget=not args.no_budget,
        monitor_options={"best_from_epoch": args.best_from_epoch} if args.best_from_epoch else None,
        max_regret=max_regret,
        match_patience=args.match_patience,
        progress=None if args.quiet else print,
    )
    policy.save(args.learn)
    cv = policy.info["cv"]
    budget = " (give max_epochs when loading: it uses the epoch budget)" if policy.needs_budget else ""
    print(
        f"{args.learn}: {len(policy.features)} features, threshold {policy.threshold:.3g}, min_wait "
        f"{policy.min_wait}, max_wait {policy.max_wait}{budget}. Cross-validated over {cv['folds']} folds of "
        f"{policy.info['groups']} group(s): {cv['saved']:.1%} of epochs saved at a mean regret of {cv['regret']:.4g}"
        + ("" if cv["feasible"] else f" (over the budget of {cv['budget']:.4g}: no setting met it)")
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m earlystop_core.policy_cli PATH --learn policy.json``; returns the exit status.

    Examples:
        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> def row(run, t):  # a val_loss bottoming out at epoch 10 + run; test accuracy mirrors it
        ...     return f"{run},{t},{1 + 0.01 * (t - 10 - run) ** 2},{0.9 - 0.001 * (t - 10 - run) ** 2}"
        >>> rows = ["run,epoch,val_loss,test_accuracy"] + [row(r, t) for r in range(6) for t in range(50)]
        >>> _ = open(os.path.join(folder, "curves.csv"), "w").write("\\n".join(rows) + "\\n")
        >>> main([folder, "--learn", os.path.join(folder, "policy.json"), "--quiet"])  # doctest: +ELLIPSIS
        /.../policy.json: 9 features, ... Cross-validated over 6 folds of 6 group(s): ...
        0
    """
    parser = argparse.ArgumentParser(prog="earlystop tune", description="Fit a stopping policy on your own runs.")
    add_tune_command(parser)
    args = parser.parse_args(argv)
    try:
        return run_tune(args)
    except (ValueError, KeyError, TypeError, OSError) as error:
        print(f"earlystop tune: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
