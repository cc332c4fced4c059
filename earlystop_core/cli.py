"""The ``earlystop`` command: replay stopping rules over recorded learning curves.

``earlystop replay`` reports what each strategy saves and costs,
``earlystop tune`` searches strategies for the best trade-off (and can learn a
stopping policy from the runs), ``earlystop plot`` draws one run with the best
and stop epochs marked, and ``earlystop demo`` streams one curve through a
Monitor, printing every decision.

Each command imports the tools it runs when it runs (numpy, matplotlib): the
command line starts fast, and ``demo`` never loads numpy. No import here dodges
a cycle; the CLI is the top layer (see ``tests/test_architecture.py``).
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from earlystop_core._version import __version__
from earlystop_core.curves import epochs, sample_curves_path
from earlystop_core.monitor import Monitor
from earlystop_core.replay.strategy import parse_strategy

#: Named strategies; ``recommended`` is the library's learned policy (see docs/replay.md).
PRESETS = {
    "recommended": "policy=recommended",
    "warmup": "patience=15,best_from_epoch=3",
    "combo": "rule=Patience(20) | (Patience(14) & Stalled(10, log=True)),best_from_epoch=3",
}
#: What PATH names the curves bundled with the package by.
SAMPLE = "sample"
#: The error for logs without a single run (a CSV header and no rows, a sweep whose trials reported nothing).
_EMPTY = "{path}: no run with a logged epoch in it: nothing to replay (is training still at its first epoch?)"
#: What ``plot --strategy auto`` draws where the recommended policy cannot replay the run.
PLOT_FALLBACK = "patience=10"
#: Skipped runs whose reason a replay says (each is replayed again alone to find it).
SKIPS_EXPLAINED = 3
#: The accuracy metric a learned policy reads, and ``keep_best_by`` uses when every run logs it.
ACCURACY = "val_accuracy"
COMPARISON = [
    "patience=5",
    "patience=10",
    "patience=20",
    "recommended",
    "warmup",
    "combo",
    "patience=20,best_from_epoch=3",
    "patience=20,keep_best_by=val_accuracy",
    "patience=10,smoothing=0.8",
    "rule=DynamicPatience()",
    "rule=GL(5)",
    "rule=UP(3)",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``earlystop`` command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():  # the readers' warnings, said as the command's own notes
            warnings.showwarning = _note
            result: int = args.run(args)
    except (ValueError, KeyError, TypeError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        if isinstance(error, OSError) and error.strerror:  # no Errno, the file named: 'x.csv: No such file ...'
            message = f"{error.filename}: {error.strerror}" if error.filename else error.strerror
        print(f"earlystop: error: {message}", file=sys.stderr)
        return 2
    return result


def _note(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A warning on standard error: earlystop's own as one line of the command's, any other as Python shows it."""
    if category in (UserWarning, RuntimeWarning) and "earlystop_core" in Path(filename).parts:
        print(f"earlystop: note: {message}", file=sys.stderr)
    else:
        (file or sys.stderr).write(warnings.formatwarning(message, category, filename, lineno, line))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="earlystop", description="Early stopping for any training loop.")
    parser.add_argument("--version", action="version", version=f"earlystop {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    formatter = _ShowDefaults

    replay = commands.add_parser(
        "replay", formatter_class=formatter, help="replay strategies over recorded curves: epochs saved vs regret"
    )
    _bank_arguments(replay)
    replay.add_argument(
        "--strategy",
        action="append",
        metavar="SPEC",
        help="Monitor arguments, comma-separated (patience=10,min_delta=0.001; rule=Patience(20) | GL(5)), "
        f"or a preset ({', '.join(PRESETS)}); repeat to compare. Default: a comparison set",
    )
    replay.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    replay.set_defaults(run=_replay)

    tune = commands.add_parser(
        "tune", formatter_class=formatter, help="search strategies for the best trade-off of epochs saved and regret"
    )
    _bank_arguments(tune)
    tune.add_argument("--max-regret", type=_finite, default=0.002, help="regret allowed, in the target's units")
    tune.add_argument("--plot", metavar="PNG", help="draw the Pareto front (needs matplotlib)")
    tune.add_argument("--learn", metavar="JSON", help="also fit a stopping policy on these runs and save it")
    tune.add_argument(
        "--runs",
        metavar="CSV",
        help="with --learn: runs.csv whose 'problem' column groups the runs for cross-validation "
        "(default: runs.csv beside PATH, if there, the sample's own for the sample; else each run is its own group)",
    )
    tune.add_argument(
        "--keep-best-by",
        default="auto",
        metavar="METRIC",
        help="with --learn: restore the best epoch of this metric (Monitor keep_best_by); 'auto' (default): "
        "val_accuracy when every run logs it, 'none': the monitored metric's best",
    )
    tune.add_argument("--best-from-epoch", type=int, default=0, help="with --learn: the Monitor's best_from_epoch")
    tune.add_argument(
        "--lr-metric",
        default="lr",
        metavar="METRIC",
        help="with --learn: the learning rate's name in the logs; its schedule features are used when some run "
        "logs it (runs and epochs without it count as a constant rate); 'none': no schedule features",
    )
    tune.add_argument("--json", action="store_true", help="print the front as JSON")
    tune.set_defaults(run=_tune)

    plot = commands.add_parser(
        "plot", formatter_class=formatter, help="draw one run's curve with the best and stop epochs marked"
    )
    _bank_arguments(plot)
    plot.add_argument("--run", dest="run_id", help="the run to draw (needed when the file holds several)")
    plot.add_argument(
        "--strategy",
        default="auto",
        metavar="SPEC",
        help=f"the strategy whose epochs to mark; 'auto': recommended where the run logs what it reads, else "
        f"{PLOT_FALLBACK}",
    )
    plot.add_argument("-o", "--output", required=True, help="PNG file to write")
    plot.set_defaults(run=_plot)

    demo = commands.add_parser(
        "demo", formatter_class=formatter, help="stream a recorded learning curve through a Monitor"
    )
    demo.add_argument(
        "path", nargs="?", default=SAMPLE, help="curves (any supported format), or 'sample': the bundled sample"
    )
    demo.add_argument("--run", default=None, dest="run_id", help="run id to stream (default: the first run)")
    demo.add_argument("--monitor", default="val_loss", help="the validation metric the Monitor watches")
    demo.add_argument("--mode", default="auto", choices=["auto", "min", "max"], help="which way it improves")
    demo.add_argument(
        "--strategy", default="patience=10", metavar="SPEC", help="Monitor arguments or a preset, as for replay"
    )
    demo.add_argument("--target", default="auto", help="metric reported for the restored epoch ('auto': as for replay)")
    demo.add_argument(
        "--target-mode", default="auto", choices=["auto", "min", "max"], help="which way the target improves"
    )
    demo.add_argument("--quiet", action="store_true", help="print only the summary")
    demo.add_argument(
        "--names",
        default="auto",
        metavar="MAP",
        help="rename logged metrics, LOGGED=NAME,... (eval_loss=val_loss); 'auto': Hugging Face, Lightning and "
        "fastai spellings of loss, val_loss and val_accuracy are read as those; 'none': as logged",
    )
    demo.set_defaults(run=_demo)
    return parser


def _finite(text: str) -> float:
    """A finite number (argparse's type for --max-regret: 'nan' would allow nothing and say so silently)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


class _ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.required:
            return action.help
        return super()._get_help_string(action)


def _bank_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        nargs="?",
        default=SAMPLE,
        help="curves: long CSV (run,epoch,metrics), Keras CSVLogger, Lightning metrics.csv, JSON lines, a directory "
        "of them, or 'sample': 120 real runs bundled with the package",
    )
    parser.add_argument("--monitor", default="val_loss", help="the validation metric the strategies watch")
    parser.add_argument("--mode", default="auto", choices=["auto", "min", "max"], help="which way it improves")
    parser.add_argument(
        "--target",
        default="auto",
        help="the metric judging the kept epoch; 'auto': a held-out test_* metric when the logs have one, else "
        "val_accuracy, else the monitored metric (regret then measured on validation data)",
    )
    parser.add_argument(
        "--target-mode", default="auto", choices=["auto", "min", "max"], help="which way the target improves"
    )
    parser.add_argument(
        "--names",
        default="auto",
        metavar="MAP",
        help="rename logged metrics, LOGGED=NAME,... (eval_loss=val_loss); 'auto': Hugging Face, Lightning and "
        "fastai spellings of loss, val_loss and val_accuracy are read as those; 'none': as logged",
    )


# -- replay ---------------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> int:
    from earlystop_core.replay.bank import Bank

    bank = _bank(args)
    _check_monitor(args, bank.metrics)
    _resolve_target(args, _judging(bank, args.monitor))
    _check_target(args, bank.metrics)
    specs = args.strategy or [spec for spec in COMPARISON if f"keep_best_by={args.monitor}" not in spec]
    rows = _rows(bank, specs, args, "strategies", required=bool(args.strategy))
    if args.json:
        keys = ("strategy", "runs", "epochs_saved", "regret", "gain")
        print(_strict_json([{key: row[key] for key in keys} for row in rows]))
    else:
        print(_table(rows, args.target, bank))
        print(_next_step(rows))
    assert isinstance(bank, Bank)
    return 0


def _next_step(rows: Sequence[dict[str, Any]]) -> str:
    """One line after the table: how to use the recommended row in code, or where to look for a choice."""
    if any(row["strategy"] == "recommended" for row in rows):
        return (
            '\nIn your training loop: Monitor(policy="recommended", restore_best_weights=True) '
            "(the recommended row); `earlystop tune PATH --learn policy.json` fits one to your own runs."
        )
    return "\n`earlystop tune PATH` picks the strategy saving the most epochs within a regret you allow."


def _rows(bank: Any, specs: Sequence[str], args: argparse.Namespace, what: str, required: bool) -> list[dict[str, Any]]:
    """A table row per strategy spec, replayed over the bank one after the other (with a progress bar on a terminal).

    A strategy no run can be replayed with is an error when ``required`` (the user named it), else left out
    with a note (a row of a built-in comparison that does not fit these logs).
    """
    rows = []
    with _Progress(len(specs), what) as progress:
        for spec in specs:
            evaluation = _evaluate(bank, spec, args, required)
            row = None if evaluation is None else _row(spec, evaluation, args.target)
            if row is not None and math.isnan(row["regret"]):  # no run could be judged: no row of NaN
                unjudged = f"no run has a finite {args.target} at its kept and best epochs"
                fix = f"--target a metric logged at every epoch {args.monitor} is (validation data: --target auto)"
                if required:
                    raise ValueError(f"{spec}: {unjudged}: {fix}")
                print(f"earlystop: {spec}: left out, {unjudged}", file=sys.stderr)
                row = None
            if row is not None:
                rows.append(row)
            progress.step()
    if not rows:
        from earlystop_core.modes import resolve_mode

        try:
            resolve_mode(args.mode, args.monitor)
            hint = "pick strategies with --strategy"
        except ValueError:  # the cause: a name that says nothing of its direction
            hint = f"give the direction of {args.monitor!r} with --mode min or --mode max"
        raise ValueError(f"none of the {what} applies to these logs (each one left out above says why); {hint}")
    return rows


def _evaluate(bank: Any, spec: str, args: argparse.Namespace, required: bool = True) -> Any:
    """Replay a strategy over the bank; runs it cannot replay are skipped, and said so on stderr.

    Returns None for a strategy no run can be replayed with, unless ``required``: then that is an error
    naming the reason and the flag that fixes it.
    """
    from earlystop_core.replay.engine import evaluate

    present = bank.present.get(args.monitor)
    strategy = _strategy(spec, args, logged=present is not None and bool(present.any()))
    options = {
        "target": args.target,
        "target_mode": args.target_mode,
        "reference": args.monitor,
        "reference_mode": args.mode,  # the monitored metric's direction: --mode's (auto reads the name)
    }
    try:
        evaluation = evaluate(bank, strategy, on_error="skip", **options)
    except (ValueError, TypeError, KeyError) as error:  # the strategy itself does not apply (a policy's settings)
        if required:
            raise ValueError(_said_for_the_command_line(error)) from None
        print(f"earlystop: {spec}: left out, it does not apply here: {_said_for_the_command_line(error)}",
              file=sys.stderr)  # fmt: skip
        return None
    if len(evaluation) == len(bank):
        return evaluation
    replayed = set(evaluation.runs)
    skipped = [index for index, run in enumerate(bank.runs) if run not in replayed]
    reasons: dict[str, list[str]] = {}  # why, the runs skipped for it: each skipped run again, a few at most
    fix = "check the strategy against the metrics logged"
    for index in skipped[:SKIPS_EXPLAINED]:
        try:
            evaluate({bank.runs[index]: bank.curve(index)}, strategy, **options)
            reason = "it could not be replayed"
        except (KeyError, ValueError, TypeError, ArithmeticError) as error:
            reason = str(error.args[0] if isinstance(error, KeyError) and error.args else error)
            if args.target == args.monitor:  # the target is the monitored metric: say it as that
                reason = reason.replace(f"no target metric {args.target!r} in the curve", f"no {args.target!r} logged")
            if not reasons:
                fix = _fix(error, args, bank.metrics)
        reasons.setdefault(reason, []).append(repr(bank.runs[index]))
    said = "; ".join(
        f"run{'s' if len(runs) > 1 else ''} {', '.join(runs)}: {reason}" for reason, runs in reasons.items()
    )
    if len(skipped) > SKIPS_EXPLAINED:
        said += f"; and {len(skipped) - SKIPS_EXPLAINED} more runs"
    if len(evaluation):
        print(f"earlystop: {spec}: {len(skipped)} of {len(bank)} runs skipped; {said}", file=sys.stderr)
        return evaluation
    if required:
        raise ValueError(f"{spec}: none of the {len(bank)} runs can be replayed ({fix}); {said}")
    print(f"earlystop: {spec}: left out, it does not fit these logs ({fix}); {said}", file=sys.stderr)
    return None


def _said_for_the_command_line(error: Exception) -> str:
    """An error of the Monitor's settings in the command line's words: a learned policy's settings are flags here.

    Examples:
        >>> said = _said_for_the_command_line(ValueError("the policy was fitted with monitor='val_loss', but "
        ...     "monitor='value' was given; drop monitor= (the policy's threshold was tuned under its own settings) "
        ...     "or fit a policy with it"))
        >>> said.endswith("was given; `earlystop tune PATH --learn policy.json` fits one with these settings (then "
        ...               "--strategy policy=policy.json)"), "drop" in said
        (True, False)
    """
    text = str(error.args[0] if isinstance(error, KeyError) and error.args else error)
    text = text.replace("Pass mode='min'", "Pass --mode min").replace("or mode='max'", "or --mode max")
    head, found, _ = text.partition("; drop ")
    if found and "(the policy's threshold was tuned under its own settings)" in text:
        return (f"{head}; `earlystop tune PATH --learn policy.json` fits one with these settings (then --strategy "
                "policy=policy.json)")  # fmt: skip
    return text


def _fix(error: Exception, args: argparse.Namespace, logged: Sequence[str] = ()) -> str:
    """The flag that fixes a replay error, in a few words."""
    missing = getattr(error, "key", None)
    text = str(error)
    if missing == args.monitor or (missing is None and f"{args.monitor!r}" in text and "metric" in text):
        return "the logs have no such metric: name the monitored one with --monitor"
    if f"target metric {args.target!r}" in text:
        return "the logs have no such metric: name another with --target"
    if missing is not None and missing in logged:
        return (f"the strategy reads {missing!r} at every epoch {args.monitor!r} is logged, and some of those lack it "
                f"(logged less often): choose another --strategy, or --monitor a metric logged with it")  # fmt: skip
    if missing is not None:
        return f"the strategy reads {missing!r}, which these logs lack: choose another --strategy"
    if "has no finite value" in text:
        return "a run without a finite value of the monitored metric has no best epoch to judge it by"
    if "logarithms" in text:
        return "the strategy takes logarithms of a metric that goes negative: choose another --strategy"
    return "check the strategy against the metrics logged"


def _check_target(args: argparse.Namespace, metrics: Sequence[str]) -> None:
    """Refuse a ``--target`` no run logs, naming the logged metric most likely meant."""
    if args.target in metrics:
        return
    from earlystop_core.errors import closest

    close = closest(args.target, metrics)
    raise ValueError(
        f"no metric {args.target!r} in the logs to judge the kept epoch by; logged: {', '.join(metrics)}. Name "
        f"another with --target{f' (--target {close})' if close else ''}, or --target auto"
    )


def _check_monitor(args: argparse.Namespace, metrics: Sequence[str]) -> None:
    """Refuse a ``--monitor`` no run logs, naming the logged metric most likely meant and the flags to use it."""
    if args.monitor in metrics:
        return
    from earlystop_core.errors import closest
    from earlystop_core.modes import resolve_mode

    close = closest(args.monitor, metrics) or (metrics[0] if len(metrics) == 1 else None)
    hint = ""
    if close is not None:
        try:
            resolve_mode("auto", close)
            hint = f" (--monitor {close})"
        except ValueError:  # a name that does not say which way it improves: Optuna's 'value'
            hint = f" (--monitor {close} --mode min, or max)"
    raise ValueError(
        f"no metric {args.monitor!r} in the logs; logged: {', '.join(metrics)}. Name the metric to watch with "
        f"--monitor{hint}, or read a logged one as {args.monitor!r} with --names LOGGED={args.monitor} (the "
        "built-in strategies speak Keras's names)"
    )


def _logged(bank: Any) -> list[str]:
    """The metrics every run of the bank logs at some epoch (a long CSV's column left blank for a run: not)."""
    import numpy as np

    within = np.arange(bank.max_epochs) < bank.lengths[:, None]
    return [
        name for name in bank.values if bool(bank.present[name].all())
        and (name not in bank.missing or bool((~bank.missing[name][:, : bank.max_epochs] & within).any(axis=1).all()))
    ]  # fmt: skip


def _judging(bank: Any, monitor: str) -> list[str]:
    """The metrics every run logs wherever it logs the monitored one (so at any epoch a rule can keep): those
    ``--target auto`` may judge by (a test metric logged at the end alone, or every other check, may not)."""
    logged = _logged(bank)
    if monitor not in bank.missing:
        return [name for name in logged if name not in bank.missing]
    checks = ~bank.missing[monitor]
    return [name for name in logged if name not in bank.missing or not (checks & bank.missing[name]).any()]


def _judging_curve(curve: Mapping[str, Sequence[float | None]], monitor: str) -> list[str]:
    """`_judging` for one run."""
    checks = [value is not None for value in curve.get(monitor, ())]
    return [name for name, values in curve.items()
            if all(value is not None for value, check in zip(values, checks, strict=False) if check)]  # fmt: skip


def choose_target(metrics: Sequence[str], monitor: str) -> tuple[str, bool]:
    """The metric ``--target auto`` judges the kept epoch by, and whether it is held out from training.

    A held-out ``test_*`` metric when the logs have one (accuracy first, then the monitored one's test
    twin); otherwise the validation accuracy the weights can be kept by, else the monitored metric.

    Examples:
        >>> choose_target(["loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy"], "val_loss")
        ('test_accuracy', True)
        >>> choose_target(["loss", "val_loss", "test_loss"], "val_loss")
        ('test_loss', True)
        >>> choose_target(["loss", "val_loss", "val_accuracy"], "val_loss")
        ('val_accuracy', False)
        >>> choose_target(["loss", "val_loss"], "val_loss")
        ('val_loss', False)
    """
    held_out = sorted(name for name in metrics if name.startswith("test_"))
    for name in ("test_accuracy", "test_acc", "test_" + monitor.removeprefix("val_"), *held_out):
        if name in held_out:
            return name, True
    if ACCURACY in metrics and monitor != ACCURACY:
        return ACCURACY, False
    return monitor, False


def _resolve_target(args: argparse.Namespace, metrics: Sequence[str]) -> None:
    """Replace ``--target auto`` by the metric `choose_target` picks; say so when it is validation data."""
    if args.target != "auto":
        return
    args.target, held_out = choose_target(metrics, args.monitor)
    if args.target == args.monitor and args.target_mode == "auto":
        args.target_mode = args.mode  # the monitored metric itself: its direction is --mode's
    if not held_out:
        print(
            f"earlystop: no held-out test_* metric in the logs: regret is measured on {args.target}, validation "
            "data (name another metric with --target)",
            file=sys.stderr,
        )


def _strict_json(value: Any) -> str:
    """JSON as the standard has it: a NaN or infinite number is written null."""

    def strict(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {key: strict(inner) for key, inner in item.items()}
        if isinstance(item, (list, tuple)):
            return [strict(inner) for inner in item]
        return item

    return json.dumps(strict(value), allow_nan=False)


def _strategy(spec: str, args: argparse.Namespace, logged: bool = False) -> dict[str, Any]:
    """Monitor arguments for a spec or preset, on the command line's monitor (restoring best weights).

    ``logged``: every run logs the monitored metric, so an epoch without it was not validated and is skipped
    (``on_missing="skip"``, unless the spec says otherwise).
    """
    if "=" not in spec and spec not in PRESETS:
        import difflib

        close = difflib.get_close_matches(spec, PRESETS, n=1)
        raise ValueError(
            f"unknown strategy {spec!r}{f' (did you mean {close[0]!r}?)' if close else ''}: name a preset "
            f"({', '.join(PRESETS)}) or give Monitor settings, key=value,... (patience=10,min_delta=0.001)"
        )
    strategy: dict[str, Any] = {"monitor": args.monitor, "mode": args.mode, "restore_best_weights": True}
    if logged:
        strategy["on_missing"] = "skip"
    strategy.update(parse_strategy(PRESETS.get(spec, spec)))
    return strategy


def _row(spec: str, evaluation: Any, target: str) -> dict[str, Any]:
    """A table row: epochs over every run replayed; the target's figures over the runs with the target at both the
    kept and the best epoch (a test metric logged at the end alone, a sparse one: left out of them, with a note)."""
    import numpy as np

    summary = evaluation.summary if len(evaluation) else None
    nan = float("nan")
    row = {
        "strategy": spec,
        "runs": len(evaluation),
        "epochs": summary.epochs_run if summary else nan,
        "epochs_saved": summary.saved if summary else nan,
        "target": nan,
        "regret": nan,
        "gain": nan,
    }
    judged = np.isfinite(evaluation.regret) & np.isfinite(evaluation.value)  # gain: whatever the last epoch logged
    if judged.any():
        row.update(target=float(np.mean(evaluation.value[judged])), regret=float(np.mean(evaluation.regret[judged])),
                   gain=float(np.mean(evaluation.gain[judged])))  # fmt: skip
    if len(evaluation) and not judged.all():
        print(f"earlystop: {spec}: {int((~judged).sum())} of {len(evaluation)} runs have no finite {target} at the "
              "kept or the best epoch (not logged there, or NaN): left out of target, regret and gain",
              file=sys.stderr)  # fmt: skip
    return row


def _table(rows: list[dict[str, Any]], target: str, bank: Any) -> str:
    width = max(len("strategy"), *(len(row["strategy"]) for row in rows))
    lines = [
        f"{len(bank)} run{'s' * (len(bank) != 1)}; regret and gain in {target} units (positive regret = worse than "
        "the best validation epoch; positive gain = better than training to the end)",
        f"{'strategy':<{width}}  {'runs':>5}  {'epochs':>7}  {'saved':>6}  {'target':>12}  {'regret':>8}  {'gain':>8}",
    ]
    for row in rows:
        lines.append(
            f"{row['strategy']:<{width}}  {row['runs']:>5}  {row['epochs']:>7.1f}  {row['epochs_saved']:>6.1%}  "
            f"{_fixed(row['target']):>12}  {_fixed(row['regret']):>8}  {_fixed(row['gain']):>8}"
        )
    return "\n".join(lines)


def _fixed(value: float) -> str:
    """Four decimals, without the sign of a value that rounds to zero.

    Examples:
        >>> _fixed(-0.00001), _fixed(-0.25), _fixed(float("nan"))
        ('0.0000', '-0.2500', 'nan')
    """
    text = f"{value:.4f}"
    return text.removeprefix("-") if text == "-0.0000" else text


def _bank(args: argparse.Namespace) -> Any:
    """The runs at PATH as a bank (a long CSV straight into arrays), their metrics named as ``--names`` says."""
    from earlystop_core.replay.bank import Bank

    bank = Bank.load(sample_curves_path() if args.path in (None, SAMPLE) else args.path)
    if not len(bank) or not bank.lengths.any():
        raise ValueError(_EMPTY.format(path=args.path))
    # The runs grouped by the metrics they log (one group for a long CSV): each group's names recognised once.
    import numpy as np

    metrics = bank.metrics
    groups, which = np.unique(np.stack([bank.present[name] for name in metrics]), axis=1, return_inverse=True)
    logged = [[name for name, flag in zip(metrics, column, strict=True) if flag] for column in groups.T.tolist()]
    mappings = _names(args, logged)
    if len({tuple(mapping.items()) for mapping in mappings}) <= 1:
        return bank.renamed(mappings[0]) if mappings[0] else bank
    from earlystop_core.formats.names import rename

    # Runs spelling a metric differently (a folder of Lightning runs, some logging train_loss, some
    # train_loss_epoch): each run renamed by its own mapping (directories of logs: small banks).
    runs = bank.curves()
    groups_of = which.ravel().tolist()
    return Bank.from_curves(
        {run: rename({run: runs[run]}, mappings[group])[run] for run, group in zip(runs, groups_of, strict=True)}
    )


def _curves(args: argparse.Namespace) -> Any:
    """The curves at PATH (``sample`` or nothing: the bundled sample), their metrics named as ``--names`` says."""
    from earlystop_core.formats.names import rename
    from earlystop_core.formats.readers import load_any

    curves = load_any(sample_curves_path() if args.path in (None, SAMPLE) else args.path)
    if not any(values for curve in curves.values() for values in curve.values()):
        raise ValueError(_EMPTY.format(path=args.path))
    mappings = _names(args, [list(curve) for curve in curves.values()])
    pairs = zip(curves.items(), mappings, strict=True)
    return {run: rename({run: curve}, mapping)[run] for (run, curve), mapping in pairs}


def _names(args: argparse.Namespace, logged: Sequence[Iterable[str]]) -> list[dict[str, str]]:
    """The renaming ``--names`` asks for, for each group of runs logging the metrics ``logged[i]``; for ``auto``,
    the spellings each group's runs use (a run lacking ``loss`` may log ``train_loss``, another
    ``train_loss_epoch``), said on standard error."""
    from earlystop_core.formats.names import parse_names, recognise

    if args.names != "auto":
        return [parse_names(args.names)] * len(logged)
    named = {args.monitor: "--monitor", args.target: "--target"}
    mappings = [recognise(names, keep=named) for names in logged]
    read = dict.fromkeys(pair for mapping in mappings for pair in mapping.items())
    if read:
        said = ", ".join(f"{source} as {target}" for source, target in read)
        print(f"earlystop: reading {said} (--names to choose, --names none to keep the logged names)", file=sys.stderr)
    kept = dict.fromkeys(pair for names in logged for pair in recognise(names).items() if pair[0] in named)
    for source, target in kept:  # named by the user as logged: the built-in strategies will not find it
        print(f"earlystop: {source} kept as named by {named[source]}; the built-in strategies read {target}: "
              f"{named[source]} {target} reads {source} as that", file=sys.stderr)  # fmt: skip
    return mappings


def _run(curves: Mapping[str, Any], run_id: str | None, path: str | None) -> str:
    """The run to use: the one named, or the only one; an unknown or missing id lists the real ones."""
    ids = list(curves)
    if run_id is None and len(ids) == 1:
        return ids[0]
    shown = ", ".join(repr(run) for run in ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
    if run_id is None:
        raise ValueError(f"{path or SAMPLE} holds {len(ids)} runs: name one with --run (runs: {shown})")
    if run_id not in curves:
        raise KeyError(f"no run {run_id!r} in {path or SAMPLE}; runs: {shown}")
    return run_id


# -- tune -------------------------------------------------------------------------------


def _candidates(bank: Any, monitor: str) -> list[str]:
    specs = [f"patience={p}" for p in (3, 5, 8, 10, 12, 15, 20, 25, 30, 40)]
    specs += [f"patience={p},best_from_epoch=3" for p in (5, 8, 10, 12, 15, 20, 25, 30)]
    specs += [f"patience={p},min_delta=0.001,min_delta_mode='rel'" for p in (10, 15, 20)]
    specs += [f"patience={p},smoothing=0.5" for p in (10, 20)]
    specs += [PRESETS["combo"], "patience='auto',max_epochs=100"]
    if (
        ACCURACY in _logged(bank) and monitor != ACCURACY
    ):  # keeping the best accuracy: a metric other than the monitored
        specs += [f"patience={p},keep_best_by={ACCURACY}" for p in (5, 8, 10, 12, 15, 20)]
        specs += ["recommended"]
    return specs


def pareto_front(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows no other row beats on both epochs saved (higher) and regret (lower); of rows with the same two
    figures, the first (the candidates come simplest first).

    Examples:
        >>> rows = [{"epochs_saved": 0.4, "regret": 0.01}, {"epochs_saved": 0.3, "regret": 0.02},
        ...         {"epochs_saved": 0.2, "regret": 0.0}, {"epochs_saved": 0.2, "regret": 0.0}]
        >>> [r["epochs_saved"] for r in pareto_front(rows)]
        [0.4, 0.2]
    """

    def beaten(row: dict[str, Any]) -> bool:
        return any(
            other["epochs_saved"] >= row["epochs_saved"]
            and other["regret"] <= row["regret"]
            and (other["epochs_saved"], other["regret"]) != (row["epochs_saved"], row["regret"])
            for other in rows
        )

    first: dict[tuple[float, float], dict[str, Any]] = {}  # the first row of each pair of figures
    for row in rows:
        first.setdefault((row["epochs_saved"], row["regret"]), row)
    return sorted((row for row in first.values() if not beaten(row)), key=lambda row: -row["epochs_saved"])


def _check_output(path: str | None, flag: str) -> None:
    """Refuse a file to write into a folder that is not there, before any work (a fit can take minutes)."""
    if path is not None and not Path(path).resolve().parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"{flag} {path}: no folder {str(Path(path).parent)!r} to write it in")


def _tune(args: argparse.Namespace) -> int:
    _check_output(args.learn, "--learn")
    _check_output(args.plot, "--plot")
    bank = _bank(args)
    _check_monitor(args, bank.metrics)
    _resolve_target(args, _judging(bank, args.monitor))
    _check_target(args, bank.metrics)
    specs = _candidates(bank, args.monitor)
    rows = _rows(bank, specs, args, "candidates", required=False)
    if args.learn:
        rows.append(_learn(bank, args))
    rows = _comparable(rows)
    front = pareto_front(rows)
    allowed = [row for row in front if row["regret"] <= args.max_regret]
    pick = max(allowed, key=lambda row: row["epochs_saved"]) if allowed else min(front, key=lambda r: r["regret"])
    if args.json:
        print(_strict_json({"front": front, "recommended": pick["strategy"]}))
    else:
        print("Pareto front (no other candidate saves more epochs at lower regret):")
        print(_table(front, args.target, bank))
        verdict = "within" if allowed else "no candidate is within"
        print(f"\nrecommended ({verdict} --max-regret {args.max_regret:g}): {pick['strategy']}")
    if args.plot:
        from earlystop_core.replay.drawing import draw_front

        draw_front(rows, front, pick).savefig(args.plot, dpi=120)
        print(f"front plotted to {args.plot}", file=sys.stderr)
    return 0


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows replayed on the most runs: a candidate that could replay only some is judged on others, and is left
    out with a note (its runs lack a metric it reads)."""
    most = max(row["runs"] for row in rows)
    for row in rows:
        if row["runs"] < most:
            print(f"earlystop: {row['strategy']}: left out of the front, it replays {row['runs']} of the {most} runs "
                  "the others do", file=sys.stderr)  # fmt: skip
    return [row for row in rows if row["runs"] == most]


def _learn(bank: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Fit a policy within ``--max-regret`` (cross-validated by group), save it, and replay it on the same runs."""
    from earlystop_core.policy.fit import fit_policy, read_runs_meta
    from earlystop_core.replay.engine import evaluate

    curves = bank.curves()
    runs = _runs_file(args)
    options: dict[str, Any] = {"best_from_epoch": args.best_from_epoch} if args.best_from_epoch else {}
    if any(curve.get(args.monitor) and None in curve[args.monitor] for curve in curves.values()):
        options["on_missing"] = "skip"  # validated every few epochs: the policy is asked at the checks alone
    keep = _keep_best_by(args, curves)
    if keep is not None:
        options["keep_best_by"] = keep
    policy = fit_policy(
        curves,
        None if runs is None else read_runs_meta(runs),
        monitor=args.monitor,
        mode=args.mode,
        target=args.target,
        target_mode=args.target_mode,
        budget=False,  # the saved policy then needs no max_epochs
        lr_metric=None if args.lr_metric == "none" else args.lr_metric,
        monitor_options=options,
        max_regret=args.max_regret,
    )
    policy.save(args.learn)
    cv = policy.info["cv"]
    print(
        f"learned policy saved to {args.learn}: cross-validated over {cv['folds']} folds of {policy.info['groups']} "
        f"group(s), {cv['saved']:.1%} of epochs saved at a mean regret of {cv['regret']:.4g}"
        + ("" if cv["feasible"] else f" (no setting met --max-regret {cv['budget']:g}: the least regret)")
        + (f", with schedule features from {policy.lr_metric!r}" if policy.lr_metric is not None else "")
        + "; its row below is replayed on the runs it was fitted on",
        file=sys.stderr,
    )

    strategy = {"monitor": args.monitor, "mode": args.mode, "policy": policy, "restore_best_weights": True}
    evaluation = evaluate(
        bank,
        strategy,
        target=args.target,
        target_mode=args.target_mode,
        reference=args.monitor,
        reference_mode=args.mode,
    )
    return _row(f"policy={args.learn!r}", evaluation, args.target)


def _runs_file(args: argparse.Namespace) -> Path | None:
    """``--runs``, else a runs.csv beside the curves (None when there is none)."""
    if args.runs is not None:
        if not Path(args.runs).is_file():
            raise FileNotFoundError(f"--runs {args.runs}: no such file")
        return Path(args.runs)
    if args.path in (None, SAMPLE):  # the bundled sample's problems, beside it in the package
        return sample_curves_path().parent / "sample_runs.csv"
    path = Path(args.path)
    beside = (path if path.is_dir() else path.parent) / "runs.csv"
    return beside if beside.is_file() else None


def _keep_best_by(args: argparse.Namespace, curves: Mapping[str, Mapping[str, Any]]) -> str | None:
    choice = args.keep_best_by
    if choice == "none":
        return None
    if choice == "auto":
        logged = all(ACCURACY in curve for curve in curves.values())
        return ACCURACY if logged and args.monitor != ACCURACY else None
    missing = [run for run, curve in curves.items() if choice not in curve]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise KeyError(f"--keep-best-by {choice}: run {missing[0]!r} does not log it{more}")
    return str(choice)


# -- plot -------------------------------------------------------------------------------


def _plot(args: argparse.Namespace) -> int:
    _check_output(args.output, "-o")
    from earlystop_core.replay.scalar import replay_run

    curves = _curves(args)
    args.run_id = _run(curves, args.run_id, args.path)
    curve = curves[args.run_id]
    _check_monitor(args, list(curve))
    _resolve_target(args, _judging_curve(curve, args.monitor))
    _check_target(args, list(curve))

    def replayed(spec: str) -> tuple[dict[str, Any], Any]:
        strategy = _strategy(spec, args, logged=args.monitor in curve)
        options = {"reference": args.monitor, "reference_mode": args.mode}
        return strategy, replay_run(curve, lambda: Monitor(**strategy), args.target, args.target_mode, **options)

    if args.strategy == "auto":
        try:
            args.strategy = "recommended"
            strategy, result = replayed(args.strategy)
        except (KeyError, ValueError) as error:
            reason = error.args[0] if isinstance(error, KeyError) and error.args else error
            print(f"earlystop: recommended does not apply to this run ({reason}); drawing {PLOT_FALLBACK} "
                  "(--strategy to choose)", file=sys.stderr)  # fmt: skip
            args.strategy = PLOT_FALLBACK
            strategy, result = replayed(args.strategy)
    else:
        strategy, result = replayed(args.strategy)
    from earlystop_core.replay.drawing import draw_run

    figure = draw_run(curve, result, Monitor(**strategy).config, f"run {args.run_id}: {args.strategy}")
    figure.savefig(args.output, dpi=120)
    print(f"run {args.run_id}: stop {result.stop}, kept {result.kept}, regret {result.regret:.4f}; wrote {args.output}")
    return 0


class _Progress:
    """A one-line progress bar on standard error, shown only on a terminal."""

    def __init__(self, total: int, what: str) -> None:
        self.total, self.what, self.done = total, what, 0
        self.shown = sys.stderr.isatty() and total > 1

    def __enter__(self) -> _Progress:
        self._draw()
        return self

    def step(self) -> None:
        self.done += 1
        self._draw()

    def _draw(self) -> None:
        if self.shown:
            filled = round(30 * self.done / self.total)
            bar = "#" * filled + "." * (30 - filled)
            print(f"\r[{bar}] {self.done}/{self.total} {self.what}", end="", file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self.shown:
            print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)


# -- demo -------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    curves = _curves(args)
    run = args.run_id if args.run_id is not None else next(iter(curves))  # a demo streams the first by default
    run = _run(curves, run, args.path)
    curve = curves[run]
    _check_monitor(args, list(curve))
    _resolve_target(args, _judging_curve(curve, args.monitor))
    _check_target(args, list(curve))
    strategy = _strategy(args.strategy, args, logged=args.monitor in curve)
    monitor = Monitor(**strategy)
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
    logged = [value for value in target if value is not None]
    print(
        f"run {run}: ran {ran} of {total} epochs ({1 - ran / total:.0%} saved); kept the weights of epoch {kept}: "
        f"{args.target} {_shown(target[kept])} (at the last epoch: {_shown(logged[-1] if logged else None)})"
    )
    return 0


def _shown(value: float | None) -> str:
    return "not logged" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    raise SystemExit(main())
