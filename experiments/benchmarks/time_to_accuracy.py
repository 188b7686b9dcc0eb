"""Validation accuracy after equal CPU budgets: mmjax's default VQA model, ViLT and the RN.

Each candidate of `budget_training.CANDIDATES` trains in a process of its own, the candidates
one after another (in turns), each for the same budgets of process CPU seconds of training
(2 cores x N minutes = 120 N CPU seconds), and is scored on the validation split at each budget
(non-relational and relational accuracy; the evaluations are not counted in the budget). CPU
seconds rather than wall minutes, because the machine is shared: a process under load gets
fewer cores, and CPU time counts what it got (contention still inflates it somewhat).

  python -m experiments.benchmarks.time_to_accuracy --budgets=60,150,300,600 \
      --out=experiments/results/benchmarks/runs/time_to_accuracy.jsonl

(`--quick`: 10 CPU seconds each, scored on 50 validation images: it only shows that every
candidate trains and is scored.)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from collections.abc import Iterator

from experiments.benchmarks.budget_training import CANDIDATES

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FULL_BUDGETS = (60.0, 150.0, 300.0, 600.0, 1200.0, 2400.0)  # 0.5 .. 20 minutes of 2 cores
# --quick only shows that every candidate trains and is scored: 10 CPU seconds each, scored on
# 50 validation images.
QUICK_BUDGETS, QUICK_IMAGES = (10.0,), 50


def measure(
    budgets: tuple[float, ...], candidates=tuple(CANDIDATES), eval_images: int = 0
) -> Iterator[dict]:
    """`time_to_accuracy` lines of every candidate at every budget, each as soon as it is scored.

    Scored on the first `eval_images` validation images (0: all). A candidate whose process
    fails yields nothing further; its error goes to stderr.
    """
    for candidate in candidates:
        command = [
            sys.executable,
            "-m",
            "experiments.benchmarks.budget_training",
            f"--candidate={candidate}",
            "--budgets=" + ",".join(f"{b:g}" for b in budgets),
            f"--eval_images={eval_images}",
        ]
        with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as process:
            for text in process.stdout:
                if text.startswith("{"):
                    yield json.loads(text)
        if process.returncode:
            print(f"time_to_accuracy: {candidate} exited {process.returncode}", file=sys.stderr)


def run_header(arguments: list[str]) -> dict:
    """The `run` line that starts a run file: the command, when, and the machine's load."""
    return {
        "section": "run",
        "command": " ".join(["python -m experiments.benchmarks.time_to_accuracy", *arguments]),
        "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> None:
    """Runs `measure` for --budgets and appends its lines to --out (and prints them)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", default=",".join(f"{b:g}" for b in FULL_BUDGETS))
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--out", required=True, help="JSON lines file to append to")
    parser.add_argument("--quick", action="store_true", help="10 CPU s each, 50 images")
    args = parser.parse_args(argv)
    budgets = tuple(float(b) for b in args.budgets.split(","))
    images = 0
    if args.quick:
        budgets, images = QUICK_BUDGETS, QUICK_IMAGES
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if not os.path.exists(args.out) or not os.path.getsize(args.out):
        with open(args.out, "w") as f:
            f.write(json.dumps(run_header(argv if argv is not None else sys.argv[1:])) + "\n")
    for line in measure(budgets, tuple(args.candidates.split(",")), images):
        print(json.dumps(line), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
