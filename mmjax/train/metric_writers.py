"""Metric writers: workdir/metrics.jsonl and TensorBoard event files, from process 0 only."""

from __future__ import annotations

import json
import math
import os

import jax


class MetricWriter:
    """Appends one JSON line {"step": s, name: value, ...} per call and mirrors to TensorBoard."""

    def __init__(self, workdir: str):
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """Records scalar metrics at `step`; non-finite values are written as null."""
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items()}
        line = {"step": int(step)}
        line.update({k: (v if math.isfinite(v) else None) for k, v in clean.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
        for name, value in clean.items():
            self._tb.add_scalar(name, value, step)
        self._tb.flush()

    def close(self) -> None:
        """Flushes and closes the TensorBoard writer."""
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
    """All records of workdir/metrics.jsonl, in order."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]
