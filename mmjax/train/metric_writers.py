"""Metric writers: workdir/metrics.jsonl and TensorBoard event files, from process 0 only."""

from __future__ import annotations

import os

import jax

from mmjax.workdir import METRICS, Workdir


class MetricWriter:
    """Appends one JSON line {"step": s, name: value, ...} per call and mirrors to TensorBoard."""

    def __init__(self, workdir: str):
        self.enabled = jax.process_index() == 0
        self._workdir = Workdir(workdir, writer=self.enabled)
        self.path = self._workdir.file(METRICS)
        self._tb = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """Records scalar metrics at `step`; non-finite values are written as null."""
        if not self.enabled:
            return
        self._workdir.append_metrics(step, metrics)
        for name, value in metrics.items():
            self._tb.add_scalar(name, float(value), step)
        self._tb.flush()

    def close(self) -> None:
        """Flushes and closes the TensorBoard writer."""
        if self._tb is not None:
            self._tb.close()
