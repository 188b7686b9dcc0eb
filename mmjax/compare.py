r"""Do two runs differ? A paired bootstrap over the examples both scored on the same split.

  python -m mmjax.compare runs/a runs/b [--eval=test] [--step_a=N] [--step_b=N] \
      [--samples=10000] [--confidence=0.95] [--seed=0] [--by=ATTRIBUTE] [--json]

Reads each run's per-example scores of evaluation `--eval` (`workdir/eval/<eval>_step<N>.npz`,
written at every evaluation; the latest step unless --step_a/--step_b say which), checks that
both scored the same examples (same split in config.json, same images in the same order, the
same group values), and for every per-example score both have (accuracy, vqa_accuracy, i2t_r1,
...) prints B's mean, A's, the difference B - A and its paired bootstrap interval: each resample
draws the split's images with replacement and scores *both* runs on the same draw, so the
noise that the two runs share (hard images) cancels out of the difference. p is the two-sided
bootstrap p-value of "no difference" (twice the share of resampled differences on the far side
of 0, at most 1). With --by, the same for each group of a grouping attribute.

Exit status 0, or 2 with one line naming the problem (a missing file, runs that scored
different examples).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from mmjax.evaluators.bootstrap import bootstrap_distribution, percentile_interval, weighted_mean
from mmjax.evaluators.examples import ExampleTable, example_file, load_table, saved_steps


class CompareError(ValueError):
    """Two runs that cannot be compared; the message says why."""


def load_run(workdir: str, name: str, step: int | None) -> tuple[ExampleTable, int]:
    """(the per-example table of evaluation `name` at `step` (None: the latest), its step)."""
    steps = saved_steps(workdir, name)
    if not steps:
        raise CompareError(
            f"{workdir} has no per-example scores of evaluation {name!r} "
            f"({example_file(workdir, name, 0).replace('_step0', '_step<N>')}): run it with "
            "an mmjax version that writes them, or pick another --eval"
        )
    step = steps[-1] if step is None else step
    if step not in steps:
        raise CompareError(f"{workdir}: evaluation {name!r} has steps {steps}, not {step}")
    return load_table(example_file(workdir, name, step)), step


def _split_of(workdir: str, name: str):
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        config = json.load(f)
    # What decides the evaluated examples (not training-only keys such as shuffle_seed).
    keys = ("name", "dataset_seed", "num_validation", "num_test", "image_size", "resize")
    data = {k: v for k, v in config.get("data", {}).items() if k in keys}
    return config.get("evals", {}).get(name, {}).get("split"), data


def check_same_examples(a: ExampleTable, b: ExampleTable, split_a=None, split_b=None) -> None:
    """Raises CompareError unless the two tables scored the same examples in the same order."""
    if split_a is not None and split_b is not None and split_a != split_b:
        raise CompareError(f"the runs evaluated different data: {split_a} vs {split_b}")
    if len(a) != len(b) or not np.array_equal(a.clusters, b.clusters):
        raise CompareError(
            f"the runs scored different examples ({len(a)} vs {len(b)}, or other images)"
        )
    for attribute in set(a.groups) & set(b.groups):
        if not np.array_equal(a.groups[attribute], b.groups[attribute]):
            raise CompareError(f"the runs' examples differ in their {attribute!r} values")


def paired_comparison(
    a: ExampleTable,
    b: ExampleTable,
    samples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
    by: str | None = None,
) -> list[dict]:
    """One row per common score (and group, with `by`): mean_a, mean_b, diff, low, high, p."""
    subsets = {"": np.ones(len(a), bool)}
    if by is not None:
        if by not in a.groups:
            raise CompareError(f"--by={by!r}: the examples have groups {sorted(a.groups)}")
        subsets.update({v: a.groups[by] == v for v in sorted(set(a.groups[by].tolist()))})
    rows = [
        (name, group, keep)
        for name in sorted(set(a.scores) & set(b.scores))
        for group, keep in subsets.items()
    ]

    def statistic(weights: np.ndarray) -> dict[int, float]:
        return {
            i: weighted_mean(b.scores[name], weights, keep)
            - weighted_mean(a.scores[name], weights, keep)
            for i, (name, _, keep) in enumerate(rows)
        }

    ones = np.ones(len(a))
    distribution = bootstrap_distribution(statistic, a.clusters, samples, seed)
    out = []
    for i, (name, group, keep) in enumerate(rows):
        values = distribution.get(i, np.zeros(0))
        values = values[np.isfinite(values)]
        low, high = percentile_interval(values, confidence)
        if values.size and np.all(values == 0):
            p = 1.0
        else:
            share = min(np.mean(values <= 0), np.mean(values >= 0)) if values.size else np.nan
            p = float(min(1.0, 2 * share))
        mean_a = weighted_mean(a.scores[name], ones, keep)
        mean_b = weighted_mean(b.scores[name], ones, keep)
        row = dict(metric=name, group=group, mean_a=mean_a, mean_b=mean_b, diff=mean_b - mean_a)
        out.append(dict(row, low=low, high=high, p=p, count=int(keep.sum())))
    return out


def format_rows(rows: list[dict], confidence: float, by: str | None) -> str:
    """The comparison as a text table (values in percent points)."""
    head = f"{'metric':<24}" + (f"{by or '':<16}" if by else "")
    head += f"{'A':>8}{'B':>8}{'B - A':>9}{f'{confidence:.0%} interval':>20}{'p':>8}"
    lines = [head]
    for r in rows:
        line = f"{r['metric']:<24}" + (f"{r['group'] or '(all)':<16}" if by else "")
        interval = f"[{100 * r['low']:+.2f}, {100 * r['high']:+.2f}]"
        line += f"{100 * r['mean_a']:>8.2f}{100 * r['mean_b']:>8.2f}{100 * r['diff']:>+9.2f}"
        lines.append(line + f"{interval:>20}{r['p']:>8.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Entry point (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m mmjax.compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--eval", default="test", help="the evaluation's name in config.evals")
    parser.add_argument("--step_a", type=int, default=None)
    parser.add_argument("--step_b", type=int, default=None)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--by", default=None, help="a grouping attribute to compare per group")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead")
    args = parser.parse_args(argv)
    try:
        if not 0 < args.confidence < 1 or args.samples < 1:
            raise CompareError("--confidence must lie in (0, 1) and --samples be positive")
        a, step_a = load_run(args.run_a, args.eval, args.step_a)
        b, step_b = load_run(args.run_b, args.eval, args.step_b)
        check_same_examples(
            a, b, _split_of(args.run_a, args.eval), _split_of(args.run_b, args.eval)
        )
        rows = paired_comparison(a, b, args.samples, args.confidence, args.seed, args.by)
    except (CompareError, FileNotFoundError) as error:
        print(f"mmjax.compare: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(
            f"A = {args.run_a} (step {step_a}), B = {args.run_b} (step {step_b}), "
            f"evaluation {args.eval!r}, {len(a)} examples, {len(set(a.clusters.tolist()))} images"
        )
        print(format_rows(rows, args.confidence, args.by))
    return 0


if __name__ == "__main__":
    sys.exit(main())
