"""The sweep's results.png: the ranking metric against each swept value.

One panel per swept key. In a panel, trials that agree on every other swept key are joined by a
line (one line per depth when the panel shows the learning rate), so an interaction between
two keys is visible. Numeric values are placed on a numeric axis (logarithmic when they are
positive and span a factor of 10 or more, as learning rates do); other values are categories.
"""

from __future__ import annotations

import math

from mmjax import sweeps


class _NoPlot(str):
    """A false result that says why no plot was written."""

    def __bool__(self) -> bool:
        return False

    @property
    def why(self) -> str:
        return str(self)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def plot(rows: list[dict], trials: list[sweeps.Trial], metric: str, path: str):
    """Writes the plot of `metric` (from the result rows) against each swept key to `path`.

    Returns True, or a false value whose `.why` says why nothing was written (no swept key,
    no trial with the metric yet, matplotlib not installed).
    """
    values = {r["name"]: r["metrics"].get(metric) for r in rows}
    shown = [
        t
        for t in trials
        if isinstance(values.get(t.name), int | float) and math.isfinite(values[t.name])
    ]
    if not shown:
        return _NoPlot(f"no trial has {metric} yet")
    keys = sweeps.swept_keys(shown)  # of the trials with a value: a failed one adds no panel
    if not keys:
        return _NoPlot(f"the trials with {metric} differ in no key")
    points = [(dict(t.overrides), values[t.name]) for t in shown]
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display is needed or wanted
        import matplotlib.pyplot as plt
    except ImportError:
        return _NoPlot("matplotlib is not installed (pip install matplotlib)")

    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        texts = [p[0].get(key, "-") for p in points]
        numbers = [_number(t) for t in texts]
        numeric = all(n is not None for n in numbers)
        if numeric:
            xs = numbers
            positive = min(xs) > 0
            if positive and max(xs) / min(xs) >= 10:
                ax.set_xscale("log")
            elif len(set(xs)) <= 8:
                ax.set_xticks(sorted(set(xs)))  # depth 2 and 3, not 2.0, 2.2, ...
        else:
            categories = list(dict.fromkeys(texts))
            xs = [categories.index(t) for t in texts]
            ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
        others = [k for k in keys if k != key]
        groups: dict[tuple, list] = {}
        for (overrides, value), x in zip(points, xs):
            label = tuple((k, overrides.get(k, "-")) for k in others)
            groups.setdefault(label, []).append((x, value))
        for label, group in groups.items():
            group.sort()
            text = ", ".join(f"{k.lstrip(':').rsplit('.', 1)[-1]}={v}" for k, v in label)
            ax.plot(*zip(*group), marker="o", label=text or None)
        if any(label for label in groups) and len(groups) <= 10:
            ax.legend(fontsize="small")
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
