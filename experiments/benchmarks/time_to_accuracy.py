"""Minutes of this machine for the default VQA config to reach a validation accuracy (`--full`).

Runs `python -m mmjax.main` on the default VQA config in a fresh temporary workdir, with the
validation evaluation every `eval_every` steps (the test split is scored once, at the end of a
run, so it cannot time a run), watches its metrics.jsonl, and stops the run
(SIGTERM: it saves and exits) at the first evaluation that reaches the target, or when the
run ends or the time limit passes. Minutes are wall-clock minutes from the launch, so they
include compilation and the evaluations; the dataset is already built by then.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

from mmjax.workdir import METRICS, read_metrics

CONFIG = "configs/vqa_transformer.py"  # relative to the repository
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _evaluations(metrics_path: str, metric: str) -> list[tuple[int, float]]:
    if not os.path.exists(metrics_path):
        return []
    # read_metrics leaves out a last line still being written.
    records = read_metrics(metrics_path)
    return [(int(r["step"]), float(r[metric])) for r in records if metric in r]


def measure(
    target: float = 0.94,
    metric: str = "validation/accuracy/relational",
    eval_every: int = 500,
    max_minutes: float = 120.0,
    poll_s: float = 5.0,
) -> dict:
    """One `time_to_accuracy` line: when (minutes, step) `metric` first reached `target`.

    `reached` is False, and `minutes` None, when the run ended or `max_minutes` passed first;
    `best` is the best value seen either way.
    """
    with tempfile.TemporaryDirectory(prefix="mmjax-time-to-accuracy-") as workdir:
        command = [
            sys.executable,
            "-m",
            "mmjax.main",
            f"--config={CONFIG}",
            f"--workdir={workdir}",
            f"--config.evals.validation.every={eval_every}",
        ]
        start = time.perf_counter()
        with open(os.path.join(workdir, "log.txt"), "w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
            reached_at = None
            try:
                while reached_at is None:
                    done = process.poll() is not None
                    evaluations = _evaluations(os.path.join(workdir, METRICS), metric)
                    hits = [(s, v) for s, v in evaluations if v >= target]
                    if hits:
                        reached_at = (hits[0][0], (time.perf_counter() - start) / 60)
                    elif done or time.perf_counter() - start > 60 * max_minutes:
                        break
                    else:
                        time.sleep(poll_s)
            finally:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=120)
        best = max((v for _, v in evaluations), default=None)
        return {
            "section": "time_to_accuracy",
            "config": CONFIG,
            "target": target,
            "metric": metric,
            "reached": reached_at is not None,
            "minutes": None if reached_at is None else reached_at[1],
            "step": None if reached_at is None else reached_at[0],
            "best": best,
            "exit_code": process.returncode,
        }
