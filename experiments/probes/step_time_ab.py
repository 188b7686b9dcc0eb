r"""Is a change slower? The default VQA train step of two checkouts, timed in turns.

  git worktree add /tmp/before <commit>
  python -m experiments.probes.step_time_ab --before=/tmp/before --after=. [--rounds=11] \
      [--steps=40] [--data_dir=/tmp/tfds_ab]

Each checkout runs in its own process, built by its own `experiments.benchmarks.train_steps`
(the trainer's compiled step on a constant batch); the two are then asked in turns, the order
alternating, to time `--steps` steps. Prints one JSON line: the median ms per step of each and
the median of the per-round ratios after / before.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def _worker(repo: str, steps: int, data_dir: str) -> None:
    """Builds `repo`'s VQA step, then times `steps` steps for each line read from stdin."""
    os.chdir(repo)
    sys.path.insert(0, repo)
    from experiments.benchmarks import train_steps

    bench = train_steps.setup("vqa", [f"data.data_dir={data_dir}"])
    bench.run(3)  # compiled and warm
    print("ready", flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        bench.run(steps)
        print(time.perf_counter() - start, flush=True)


def main() -> None:
    """Parses the flags, starts both workers and times them in turns."""
    parser = argparse.ArgumentParser(prog="python -m experiments.probes.step_time_ab")
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default=".")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--data_dir", default="/tmp/tfds_ab")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    flags = parser.parse_args()
    if flags.worker:
        _worker(flags.worker, flags.steps, flags.data_dir)
        return
    workers = {}
    for name in ("before", "after"):
        repo = os.path.abspath(getattr(flags, name))
        command = [sys.executable, os.path.abspath(__file__), f"--worker={repo}"]
        command += [f"--steps={flags.steps}", f"--data_dir={flags.data_dir}", "--before=-"]
        workers[name] = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
    for worker in workers.values():
        while worker.stdout.readline().strip() != "ready":
            pass
    seconds = {name: [] for name in workers}
    for round_ in range(flags.rounds):
        order = list(workers) if round_ % 2 == 0 else list(reversed(workers))
        for name in order:
            workers[name].stdin.write("go\n")
            workers[name].stdin.flush()
            seconds[name].append(float(workers[name].stdout.readline()))
    for worker in workers.values():
        worker.stdin.close()
        worker.wait()
    ratios = [a / b for a, b in zip(seconds["after"], seconds["before"], strict=True)]
    result = {
        f"{k}_ms_per_step": 1e3 * statistics.median(v) / flags.steps for k, v in seconds.items()
    }
    result["median_ratio_after_over_before"] = statistics.median(ratios)
    result["ratios"] = [round(r, 3) for r in ratios]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
