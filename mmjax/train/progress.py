"""A progress line with steps/s, examples/s and ETA, measured over the last interval."""

from __future__ import annotations

import time


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Tracks throughput between calls to `update` and formats a one-line report."""

    def __init__(self, total_steps: int, examples_per_step: int, start_step: int = 0):
        self.total_steps = total_steps
        self.examples_per_step = examples_per_step
        self.start = time.perf_counter()
        self._last_time = self.start
        self._last_step = start_step

    def update(self, step: int) -> dict[str, float]:
        """Throughput since the previous call: steps_per_sec, examples_per_sec, eta_sec."""
        now = time.perf_counter()
        steps_per_sec = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, step
        return {
            "steps_per_sec": steps_per_sec,
            "examples_per_sec": steps_per_sec * self.examples_per_step,
            "eta_sec": (self.total_steps - step) / max(steps_per_sec, 1e-9),
        }

    def line(self, step: int, loss: float, rates: dict[str, float]) -> str:
        """'step 120/3000 (4%) loss 1.234 | 2.1 steps/s, 67 ex/s | elapsed 0:57 | ETA 22:51'."""
        percent = 100 * step / max(self.total_steps, 1)
        return (
            f"step {step}/{self.total_steps} ({percent:.0f}%) loss {loss:.4f} | "
            f"{rates['steps_per_sec']:.2f} steps/s, {rates['examples_per_sec']:.0f} ex/s | "
            f"elapsed {_duration(time.perf_counter() - self.start)} | "
            f"ETA {_duration(rates['eta_sec'])}"
        )
