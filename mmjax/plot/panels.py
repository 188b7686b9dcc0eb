"""Learning curves for a paper's figure: chosen metrics of one run, in named panels, as PNG.

Unlike `plot_runs` (every metric, one panel each), the caller says which metrics share a panel
and how they are labelled: e.g. the training loss (smoothed, the raw curve faint behind it),
validation accuracy of two question types against steps with the test result (scored once
at the end) as a point and a baseline as a dashed line.
"""

from __future__ import annotations

import dataclasses
import os

from mmjax.plot import PlotError, series, smooth


@dataclasses.dataclass
class Curve:
    """One metric in a panel: its name in metrics.jsonl and its legend label.

    A metric logged once (a test score) is drawn as a point; `scale` multiplies the values
    (100 for percentages); `color` picks matplotlib's colour C<color> (default: the curve's
    position in its panel), so a test point can take its validation curve's colour.
    """

    metric: str
    label: str
    scale: float = 1.0
    color: int | None = None


@dataclasses.dataclass
class Panel:
    """A panel: its title, y label, curves, and dashed reference lines (value, label)."""

    title: str
    ylabel: str
    curves: list[Curve]
    references: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    log_y: bool = False
    smoothing: float = 0.0


def curves_figure(records: list[dict], panels: list[Panel], path: str, title: str = "") -> str:
    """Draws `panels` from a run's metrics `records` side by side into `path` (PNG, 100 dpi).

    PlotError when a curve's metric is not in the records. Returns `path`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2 * len(panels), 3.4), dpi=100, constrained_layout=True)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        for i, curve in enumerate(panel.curves):
            steps, values = series(records, curve.metric)
            if not steps:
                raise PlotError(f"no metric {curve.metric!r} in the run's metrics")
            values = [v * curve.scale for v in values]
            color = f"C{(i if curve.color is None else curve.color) % 10}"
            if len(steps) == 1:
                ax.plot(steps, values, "*", color=color, markersize=11, label=curve.label)
                continue
            if panel.smoothing:
                ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
                values = smooth(values, panel.smoothing)
            marker = "o" if len(steps) <= 30 else None
            ax.plot(steps, values, color=color, marker=marker, markersize=3, label=curve.label)
        for value, label in panel.references:
            ax.axhline(value, color="0.45", linestyle="--", linewidth=1)
            ax.annotate(
                label,
                (0.01, value),
                xycoords=("axes fraction", "data"),
                fontsize=7,
                color="0.35",
                va="bottom",
            )
        if panel.log_y:
            _log_axis(ax)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if len(panel.curves) > 1:
            ax.legend(fontsize=7)
    if title:
        figure.suptitle(title, fontsize=11)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _log_axis(ax) -> None:
    """Makes `ax`'s y axis logarithmic, labelled in plain numbers (0.2, not 2 x 10^-1).

    Over less than 2.5 decades the minor ticks at 2 and 5 times a power of ten are labelled
    too, under one decade all of them (else the axis may show one label or none).
    """
    import math

    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))

    low, high = ax.get_ylim()
    shown = range(1, 10) if high / low < 10 else (2, 5)

    def minor(value, _):
        mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
        return f"{value:g}" if mantissa in shown else ""

    ax.yaxis.set_minor_formatter(FuncFormatter(minor) if high / low < 10**2.5 else NullFormatter())
    ax.tick_params(axis="y", which="minor", labelsize=8)
