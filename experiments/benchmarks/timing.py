"""Timing helpers: medians after warm-up, interleaved side by side, and XLA's FLOP counts.

On a shared machine the load drifts during a run. So candidates that are compared are timed
in turns (A B, B A, A B, ...) rather than one after the other, and every number is a median of
several repetitions after the warm-up calls (which also compile).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp


def _timed_turns(
    candidates: dict[str, Callable[[], object]], reps: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds of each call of each candidate over `reps` turns (A B, B A, A B, ...)."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in candidates}
    order = list(candidates)
    for _ in range(reps):
        for name in order:
            start = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - start)
        order.reverse()  # neither candidate always runs after the other
    return times


def interleaved_medians(
    candidates: dict[str, Callable[[], object]], reps: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each candidate, timed in turns.

    Args:
      candidates: name -> a function that runs one call and blocks until its result is ready.
      reps: repetitions per candidate (the median is over these).
      warmup: untimed calls of each candidate first (compilation, caches).

    Returns:
      name -> median seconds of one call.
    """
    times = _timed_turns(candidates, reps, warmup)
    return {name: statistics.median(values) for name, values in times.items()}


def paired_ratio(
    baseline: Callable[[], object], candidate: Callable[[], object], reps: int
) -> tuple[float, float, float]:
    """Median of candidate / baseline time over `reps` pairs run back to back, and the medians.

    Each pair is timed in turns (A B, then B A), and its own ratio taken, so drift in the
    machine's load between pairs cancels out. One warm-up call of each first.

    Returns:
      (median ratio, median seconds of baseline, median seconds of candidate).
    """
    times = _timed_turns({"baseline": baseline, "candidate": candidate}, reps, warmup=1)
    base, cand = times["baseline"], times["candidate"]
    ratios = [c / b for b, c in zip(base, cand)]
    return statistics.median(ratios), statistics.median(base), statistics.median(cand)


def xla_flops(compiled) -> float:
    """FLOPs of one call of a lowered or compiled program (`jax.jit(f).lower(...)[.compile()]`).

    From XLA's cost analysis, so it counts what XLA counts: 2 m n k per matmul, plus the
    elementwise and reduction operations.
    """
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):  # older JAX: one dict per program
        analysis = analysis[0]
    if not analysis or "flops" not in analysis:
        raise RuntimeError("XLA's cost analysis gave no 'flops' for this program")
    return float(analysis["flops"])


def matmul(m: int, k: int, n: int) -> tuple[Callable[[], None], float]:
    """A jitted [m, k] x [k, n] float32 matmul: (run, FLOPs per run).

    `run` repeats the matmul to about 50 ms (thin ones take microseconds) and waits for it.
    """
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (m, k), jnp.float32)
    b = jax.random.normal(key_b, (k, n), jnp.float32)
    jitted = jax.jit(jnp.matmul)
    calls = max(1, int(5e8 / (m * k * n)))

    def run():
        for _ in range(calls):
            out = jitted(a, b)
        out.block_until_ready()

    return run, 2.0 * m * k * n * calls


def matmul_ceilings(shapes: list[tuple[int, int, int]], reps: int) -> list[dict]:
    """`ceiling` lines: GFLOP/s of float32 matmuls of `shapes` (m, k, n) through XLA, in turns.

    A large square one is the machine's practical peak for dense float32 compute; a thin one
    (k and n a model's width) shows what XLA reaches on the matmuls small models are made of.
    """
    runs = {shape: matmul(*shape) for shape in shapes}
    seconds = interleaved_medians({shape: run for shape, (run, _) in runs.items()}, reps)
    return [
        {
            "section": "ceiling",
            "shape": f"[{m}, {k}] x [{k}, {n}]",
            "median_s": seconds[(m, k, n)],
            "gflops_per_s": runs[(m, k, n)][1] / seconds[(m, k, n)] / 1e9,
        }
        for m, k, n in shapes
    ]
