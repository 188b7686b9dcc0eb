r"""Training and evaluation curves of one or several runs, from their metrics.jsonl, as PNG files.

  python -m mmjax.plot --workdir=runs/vqa                          # runs/vqa/plots/*.png
  python -m mmjax.plot --workdir=runs/a --workdir=runs/b --out=cmp  # both runs in each panel

One PNG per metric group, the name before the first "/" (`train.png`, `test.png` for the eval
named test, ...), with one panel per metric and one line per run. Bookkeeping metrics (timings,
example counts) are left out unless --metrics selects them. A step logged twice (a run resumed
from an older checkpoint logs its steps again) keeps its last value. Needs matplotlib
(a core dependency of mmjax).
"""

from __future__ import annotations

import math
import os
import re

from mmjax.workdir import METRICS, read_metrics

# Numbers about the run's speed or size rather than its model.
BOOKKEEPING = (
    "seconds",
    "count",
    "eta_sec",
    "examples_per_sec",
    "steps_per_sec",
    "skipped_steps",
)


class PlotError(ValueError):
    """A workdir without metrics, or a selection that matches nothing."""


def read_records(workdir: str) -> list[dict]:
    """The records of `workdir`/metrics.jsonl; PlotError when it has none."""
    path = os.path.join(workdir, METRICS)
    if not os.path.isfile(path):
        raise PlotError(f"{workdir!r} has no {METRICS}: not a workdir written by mmjax.main")
    records = read_metrics(path)
    if not records:
        raise PlotError(f"{path!r} is empty")
    return records


def series(records: list[dict], name: str) -> tuple[list[int], list[float]]:
    """(steps, values) of metric `name`, by step; a repeated step keeps its last finite value."""
    by_step = {}
    for record in records:
        value = record.get(name)
        if isinstance(value, int | float) and math.isfinite(value):
            by_step[int(record["step"])] = float(value)
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def smooth(values: list[float], weight: float) -> list[float]:
    """TensorBoard's debiased exponential moving average (weight 0 returns the values)."""
    if not 0.0 <= weight < 1.0:
        raise PlotError(f"smoothing weight {weight} must lie in [0, 1)")
    out, average = [], 0.0
    for i, value in enumerate(values):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight ** (i + 1)))
    return out


def select_metrics(runs: dict[str, list[dict]], pattern: str | None) -> dict[str, list[str]]:
    """Metric names of all runs by group ("train", "test", ...), each group's names sorted.

    `pattern` (a regex searched in each name) selects metrics; without one every metric but
    the BOOKKEEPING ones is taken. PlotError when nothing is selected.
    """
    names = {k for records in runs.values() for r in records for k in r if k != "step"}
    if pattern:
        chosen = {n for n in names if re.search(pattern, n)}
    else:
        chosen = {n for n in names if n.rsplit("/", 1)[-1] not in BOOKKEEPING}
    if not chosen:
        raise PlotError(f"no metric matches {pattern!r}; the runs have {sorted(names)}")
    groups: dict[str, list[str]] = {}
    for name in sorted(chosen):
        groups.setdefault(name.split("/", 1)[0], []).append(name)
    return groups


def run_labels(workdirs: list[str]) -> list[str]:
    """Short names for the runs: the workdirs' base names, or their paths when those repeat."""
    paths = [os.path.normpath(w) for w in workdirs]
    names = [os.path.basename(p) or p for p in paths]
    return names if len(set(names)) == len(names) else paths


def plot_runs(
    workdirs: list[str], out_dir: str, pattern: str | None = None, smoothing: float = 0.0
) -> list[str]:
    """Draws every selected metric of the runs in `workdirs` into `out_dir`/<group>.png.

    Train curves are smoothed with `smoothing` (the raw curve is drawn faintly behind);
    evaluation curves never are. Returns the paths written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display is needed or wanted
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("matplotlib is not installed (pip install -e .)") from None
    if not workdirs:
        raise PlotError("no workdir given")
    runs = {label: read_records(w) for label, w in zip(run_labels(workdirs), workdirs)}
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for group, names in select_metrics(runs, pattern).items():
        columns = min(4, len(names))
        rows = math.ceil(len(names) / columns)
        fig, axes = plt.subplots(
            rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False, constrained_layout=True
        )
        for ax, name in zip(axes.flat, names):
            for i, (label, records) in enumerate(runs.items()):
                steps, values = series(records, name)
                if not steps:
                    continue
                color = f"C{i % 10}"
                if group == "train" and smoothing > 0:
                    ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
                    values = smooth(values, smoothing)
                marker = "o" if group != "train" and len(steps) <= 30 else None
                ax.plot(steps, values, color=color, marker=marker, markersize=3, label=label)
            ax.set_title(name.split("/", 1)[-1], fontsize=10)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        for ax in axes.flat[len(names) :]:
            ax.set_visible(False)
        if len(runs) > 1:
            axes.flat[0].legend(fontsize=8)
        fig.suptitle(group)
        path = os.path.join(out_dir, f"{re.sub(r'[^A-Za-z0-9_.-]', '_', group)}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
