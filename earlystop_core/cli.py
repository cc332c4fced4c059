"""The ``earlystop`` command.

``earlystop demo`` streams a recorded learning curve through a Monitor and
prints every decision: what the library does, in one command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from earlystop_core.curves import epochs, load_curves, sample_curves_path
from earlystop_core.monitor import Monitor


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``earlystop`` command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="earlystop", description="Early stopping for any training loop.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="stream a recorded learning curve through a Monitor")
    demo.add_argument("path", nargs="?", help="long CSV of curves (run,epoch,metrics...); default: bundled sample")
    demo.add_argument("--run", default=None, help="run id to stream (default: the first run)")
    demo.add_argument("--monitor", default="val_loss")
    demo.add_argument("--mode", default="auto", choices=["auto", "min", "max"])
    demo.add_argument("--patience", type=int, default=10)
    demo.add_argument("--min-delta", type=float, default=0.0)
    demo.add_argument("--target", default="test_accuracy", help="metric reported for the restored epoch")
    demo.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)
    try:
        return _demo(args)
    except (ValueError, KeyError, TypeError, OSError) as error:
        print(f"earlystop: error: {error}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    curves = load_curves(args.path or sample_curves_path())
    run = args.run if args.run is not None else next(iter(curves))
    if run not in curves:
        raise KeyError(f"no run {run!r} in the curves; runs: {', '.join(list(curves)[:10])}, ...")
    curve = curves[run]
    if args.target not in curve:
        raise KeyError(f"no metric {args.target!r} in the curves; metrics: {', '.join(curve)}")
    monitor = Monitor(
        monitor=args.monitor,
        mode=args.mode,
        patience=args.patience,
        min_delta=args.min_delta,
        restore_best_weights=True,
    )
    total = len(curve[args.target])
    decision = None
    for logs in epochs(curve):
        decision = monitor.update(logs)
        if not args.quiet:
            print(decision.message)
        if decision.should_stop:
            break
    if decision is None:
        raise ValueError(f"run {run!r} has no epochs")
    if not decision.should_stop:
        decision = monitor.finish()
    kept = decision.best_epoch if decision.restore and decision.best_epoch is not None else decision.epoch
    ran = decision.epoch + 1
    target = curve[args.target]
    print(
        f"run {run}: ran {ran} of {total} epochs ({1 - ran / total:.0%} saved); kept the weights of epoch {kept}: "
        f"{args.target} {target[kept]:.4f} (at the last epoch: {target[-1]:.4f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
