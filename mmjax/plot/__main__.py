r"""Command line of mmjax.plot: `python -m mmjax.plot --workdir=runs/vqa [--workdir=...]`.

Writes one PNG per metric group and prints the paths (see `mmjax.plot`).
"""

from __future__ import annotations

import os
import re
import sys

from absl import app, flags

from mmjax.plot import PlotError, plot_runs

flags.DEFINE_multi_string("workdir", [], "Workdir of a run (repeat the flag to compare runs).")
flags.DEFINE_string("out", None, "Output directory (default: <workdir>/plots for one run).")
flags.DEFINE_string("metrics", None, "Regex selecting metrics (default: all but bookkeeping).")
flags.DEFINE_float("smooth", 0.0, "EMA weight for train curves, in [0, 1) (0: none).")
FLAGS = flags.FLAGS


def main(argv) -> None:
    """Writes the PNG files and prints their paths; one-line errors."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    try:
        if not FLAGS.workdir:
            raise PlotError("at least one --workdir is required")
        out = FLAGS.out
        if out is None:
            if len(FLAGS.workdir) > 1:
                raise PlotError("with several --workdir, name the output directory with --out")
            out = os.path.join(FLAGS.workdir[0], "plots")
        for path in plot_runs(FLAGS.workdir, out, FLAGS.metrics, FLAGS.smooth):
            print(path)
    except (PlotError, re.error) as error:
        print(f"mmjax: plot error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
