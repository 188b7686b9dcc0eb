"""Timing helpers: medians after warm-up, interleaved side by side, and XLA's FLOP counts.

On a shared machine the load drifts during a run. So candidates that are compared are timed
in turns (A, B, A, B, ...) rather than one after the other, and every number is a median of
several repetitions after the warm-up calls (which also compile).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp


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
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in candidates}
    for _ in range(reps):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def xla_flops(compiled) -> float:
    """FLOPs of one call of a compiled program (`jax.jit(f).lower(...).compile()`).

    From XLA's cost analysis, so it counts what XLA counts: 2 m n k per matmul, plus the
    elementwise and reduction operations.
    """
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):  # older JAX: one dict per program
        analysis = analysis[0]
    if not analysis or "flops" not in analysis:
        raise RuntimeError("XLA's cost analysis gave no 'flops' for this program")
    return float(analysis["flops"])


def matmul_ceiling(m: int, k: int, n: int, reps: int) -> dict:
    """GFLOP/s of an [m, k] x [k, n] float32 matmul through XLA, in this process.

    A large square one is the machine's practical peak for dense float32 compute, the
    denominator of the train steps' model FLOPs utilisation; a thin one (k and n the models'
    width) shows what XLA reaches on the matmul shapes the small models are made of.
    """
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (m, k), jnp.float32)
    b = jax.random.normal(key_b, (k, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    # Thin matmuls take microseconds: repeat them to about 50 ms per timed repetition.
    calls = max(1, int(5e8 / (m * k * n)))

    def run():
        for _ in range(calls):
            out = matmul(a, b)
        out.block_until_ready()

    seconds = interleaved_medians({"matmul": run}, reps)["matmul"] / calls
    return {
        "section": "ceiling",
        "shape": f"[{m}, {k}] x [{k}, {n}]",
        "median_s": seconds,
        "gflops_per_s": 2.0 * m * k * n / seconds / 1e9,
    }
