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


def xla_flops(jitted: Callable, *args) -> float:
    """FLOPs of one call of `jitted` on `args`, from XLA's cost analysis of the compiled program.

    Counts what XLA counts: 2 m n k per matmul, plus elementwise and reduction operations.
    """
    analysis = jitted.lower(*args).compile().cost_analysis()
    if isinstance(analysis, list | tuple):  # older JAX: one dict per program
        analysis = analysis[0]
    if not analysis or "flops" not in analysis:
        raise RuntimeError("XLA's cost analysis gave no 'flops' for this program")
    return float(analysis["flops"])


def matmul_ceiling(size: int, reps: int) -> dict[str, float]:
    """GFLOP/s of a [size, size] x [size, size] float32 matmul through XLA, in this process.

    The machine's practical peak for dense float32 compute: the denominator of the model FLOPs
    utilisation of the train steps.
    """
    keys = jax.random.split(jax.random.key(0))
    a, b = (jax.random.normal(k, (size, size), jnp.float32) for k in keys)
    matmul = jax.jit(jnp.matmul)
    seconds = interleaved_medians({"matmul": lambda: matmul(a, b).block_until_ready()}, reps)
    flops = 2.0 * size**3
    return {
        "size": size,
        "median_s": seconds["matmul"],
        "gflops_per_s": flops / seconds["matmul"] / 1e9,
    }
