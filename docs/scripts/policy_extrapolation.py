"""Learning-curve extrapolation against the learned policy, out of problem and out of schedule (issue 16).

Run from anywhere:

    python docs/scripts/policy_extrapolation.py [--dev PATH] [--shift PATH] [--jobs 2]

A stopping rule in the style of Domhan et al. (2015), made cheap: at every
epoch ``t`` the validation loss seen so far is fitted by least squares with
two parametric families, ``pow3`` (``c + a (s + 1)^-alpha``) and ``exp3``
(``c + a exp(-b s)``), each over a grid of 24 exponents (the best by squared
error wins; ``a`` and ``c`` are linear, so every epoch's fit costs a few
cumulative sums), and the fitted curve predicts the validation loss at the
run's last planned epoch. The rule stops once ``wait >= min_wait`` and the
predicted further gain over the best so far, relative to it, is below
``epsilon`` (and always once ``wait >= max_wait``). ``epsilon``, ``min_wait``
and ``max_wait`` are chosen exactly as the learned policy's threshold and
waits are (:func:`earlystop_core.policy.fit.choose`: inner leave-one-problem-out,
the largest saving with a cross-validated regret within -0.05 pp), on the same
recorded Monitor runs (``keep_best_by="val_accuracy"``), so the two are
compared on equal terms. Unlike the policy, the rule needs each run's epoch
budget. It prints a markdown table (quoted in docs/policy.md's discussion);
the learned policy's rows are the recommended variant of
``policy_schedules.py``, simulated on the same records.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from earlystop_core.policy.fit import choose, simulate
from earlystop_core.replay.scalar import paired_bootstrap

sys.path.insert(0, str(Path(__file__).resolve().parent))
import policy_schedules as ps  # a sibling script

EXPONENTS = np.geomspace(0.05, 4.0, 24)
#: log(relative gain) cut-offs: stop when the predicted relative gain is below exp(cut).
CUTS = tuple(float(x) for x in np.linspace(-14.0, 0.0, 141))
BUDGET = -0.0005


def predicted_gain(values: Sequence[float], budget: int) -> np.ndarray:
    """Per epoch t: log of the relative gain over the best so far that the best fit of epochs 0..t predicts at
    epoch ``budget - 1`` (``-inf`` when none)."""
    y = np.asarray(values, dtype=float)
    n = len(y)
    s = np.arange(n, dtype=float)
    count = np.arange(1, n + 1, dtype=float)
    sy, syy = np.cumsum(y), np.cumsum(y * y)
    best_sse = np.full(n, np.inf)
    final = np.full(n, np.nan)
    for family in ("pow3", "exp3"):
        for k in EXPONENTS:
            x = (s + 1.0) ** -k if family == "pow3" else np.exp(-k * s / 10.0)
            end = budget**-k if family == "pow3" else math.exp(-k * (budget - 1) / 10.0)
            sx, sxx, sxy = np.cumsum(x), np.cumsum(x * x), np.cumsum(x * y)
            det = count * sxx - sx * sx
            with np.errstate(divide="ignore", invalid="ignore"):
                a = (count * sxy - sx * sy) / det
                c = (sy - a * sx) / count
                sse = syy - 2 * a * sxy - 2 * c * sy + a * a * sxx + 2 * a * c * sx + count * c * c
            ok = (det > 1e-12) & (a > 0) & (sse < best_sse)
            best_sse = np.where(ok, sse, best_sse)
            final = np.where(ok, c + a * end, final)
    best = np.minimum.accumulate(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = (best - final) / np.abs(best)
        return np.where(np.isfinite(final) & (gain > 0), np.log(np.maximum(gain, 1e-300)), -np.inf)


def scores(records: Sequence[ps.RunRecord]) -> list[np.ndarray]:
    out = []
    for r in records:
        values = [v if v is not None else math.nan for v in ps._CURVES[r.run]["val_loss"]]
        budget = int(ps._META[r.run]["epochs"])
        out.append(predicted_gain(values, budget)[r.epoch])
    return out


def fold(task: tuple[str, str]) -> dict[str, dict[str, tuple[float, float]]]:
    kind, held = task
    train = [r for r in ps._RECORDS if ps._META[r.run][kind] != held]
    test = [r for r in ps._RECORDS if ps._META[r.run][kind] == held
            and (kind == "problem" or ps._META[r.run]["bank"] == "shift")]  # fmt: skip
    out: dict[str, dict[str, tuple[float, float]]] = {"extrapolation": {}, "policy": {}}
    chosen = choose(train, scores(train), BUDGET, cuts=CUTS)
    saved, regret, _ = simulate(test, scores(test), chosen.min_wait, chosen.max_wait, [chosen.cut])
    out["extrapolation"] = {
        r.run: (float(a), float(b)) for r, a, b in zip(test, saved[:, 0], regret[:, 0], strict=True)
    }
    variant = next(v for v in ps.VARIANTS if v.name == ps.RECOMMENDED)
    policy = ps.fit(variant, train)
    columns = [ps.NAMES.index(name) for name in policy.features]
    means, scales, weights = np.array(policy.means), np.array(policy.scales), np.array(policy.weights)
    logits = [policy.bias + ((r.features[:, columns] - means) / scales) @ weights for r in test]
    cut = math.log(policy.threshold / (1.0 - policy.threshold))
    saved, regret, _ = simulate(test, logits, policy.min_wait, policy.max_wait, [cut])
    out["policy"] = {r.run: (float(a), float(b)) for r, a, b in zip(test, saved[:, 0], regret[:, 0], strict=True)}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dev", type=Path, default=ps.SHARED / "dev")
    parser.add_argument("--shift", type=Path, default=ps.SHARED / "shift_dev")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    ps.load(args.dev, args.shift)
    problems = sorted({m["problem"] for m in ps._META.values()})
    tasks = [("problem", p) for p in problems] + [("schedule", s) for s in ps.SCHEDULES]
    if args.jobs > 1:
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            results = pool.map(fold, tasks, chunksize=1)
    else:
        results = [fold(t) for t in tasks]
    print("| protocol | runs | extrapolation saved / regret | policy saved / regret | Δ saved | Δ regret |")
    print("|---|---|---|---|---|---|")
    for protocol, kind in (("out of problem", "problem"), ("out of schedule", "schedule")):
        merged: dict[str, dict[str, tuple[float, float]]] = {"extrapolation": {}, "policy": {}}
        for (k, _), result in zip(tasks, results, strict=True):
            if k == kind:
                for name in merged:
                    merged[name] |= result[name]
        groups = [("dev", lambda m: m["bank"] == "dev"), ("shift_dev", lambda m: m["bank"] == "shift"),
                  ("shift_dev, cosine", lambda m: m["bank"] == "shift" and m["schedule"] == "cosine")]  # fmt: skip
        for label, keep in groups:
            runs = [r for r in merged["policy"] if keep(ps._META[r])]
            if not runs:
                continue
            e = np.array([merged["extrapolation"][r] for r in runs])
            p = np.array([merged["policy"][r] for r in runs])
            ds = paired_bootstrap(e[:, 0], p[:, 0], ps.BOOTSTRAP, ps.SEED)
            dr = paired_bootstrap(e[:, 1], p[:, 1], ps.BOOTSTRAP, ps.SEED)
            print(f"| {protocol}, {label} | {len(runs)} | {100 * e[:, 0].mean():.1f}% / {100 * e[:, 1].mean():+.2f} | "
                  f"{100 * p[:, 0].mean():.1f}% / {100 * p[:, 1].mean():+.2f} | {ps._interval(ds)} | "
                  f"{ps._interval(dr)} |")  # fmt: skip
    print(f"[timing] {time.perf_counter() - started:.0f} s with {args.jobs} process(es)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
