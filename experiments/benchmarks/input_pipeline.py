"""The grain input pipeline against the train step it feeds.

Two questions: does the pipeline deliver examples much faster than the step consumes them
(measured alone, so the two do not share the CPU), and is the step, fed by the real pipeline
as in the trainer's loop, as fast as the same step fed one constant batch (measured in turns)?
With `data.cache_mb` the pipeline keeps the preprocessed examples after their first read: it
is measured in the first epoch (reading every record) and after one pass over the split (what
the later epochs see), and the step is fed by the warmed pipeline. Without it
(`cache_mb=0`) every epoch reads as the first: a second reader with `cache_mb=0` is measured
after its first batches (for a config without the cache, the same reader's later figure).
"""

from __future__ import annotations

import time

from experiments.benchmarks.timing import paired_ratio
from experiments.benchmarks.train_steps import StepSetup
from mmjax.data import pipeline
from mmjax.train import sharding


def _train_iterator(bench: StepSetup, cache_mb: int | None = None):
    """The trainer's training iterator for `bench` (`cache_mb`: the config's unless given)."""
    data = bench.config.data
    return iter(
        pipeline.train_dataset(
            bench.source,
            bench.task.preprocess,
            bench.config.batch_size,
            seed=data.shuffle_seed,
            num_threads=data.num_threads,
            cache_mb=data.get("cache_mb", 0) if cache_mb is None else cache_mb,
        )
    )


def _finish_epoch(bench: StepSetup, iterator, batches_read: int) -> None:
    """Reads on until `iterator` has passed over the whole training split once."""
    for _ in range(len(bench.source) // bench.config.batch_size + 1 - batches_read):
        next(iterator)


def examples_per_s(bench: StepSetup, iterator, batches: int, reps: int) -> float:
    """Median examples/s that `iterator` delivers over `reps` runs of `batches` batches."""
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        rates.append(batches * bench.config.batch_size / (time.perf_counter() - start))
    return sorted(rates)[len(rates) // 2]


def measure(bench: StepSetup, batches: int, reps: int, steps: int) -> dict:
    """One `pipeline` line for `bench`'s task (see the module docstring).

    The pipeline alone is timed over `reps` runs of `batches` batches; the step fed each way
    over 3 * `reps` pairs of turns of `steps` steps run as the trainer's loop runs them, the
    slowdown being the median of the pairs' ratios.
    """
    iterator = _train_iterator(bench)
    untimed = 3  # thread start-up and the first prefetch
    for _ in range(untimed):
        next(iterator)
    first_epoch = examples_per_s(bench, iterator, batches, reps)
    uncached = None
    if bench.config.data.get("cache_mb", 0) > 0:
        _finish_epoch(bench, iterator, untimed + batches * reps)
    supply = examples_per_s(bench, iterator, batches, reps)
    if bench.config.data.get("cache_mb", 0) > 0:  # what later epochs get with cache_mb=0
        reader = _train_iterator(bench, cache_mb=0)
        for _ in range(untimed):
            next(reader)
        uncached = examples_per_s(bench, reader, batches, reps)
        del reader

    def next_batch():
        return sharding.step_batch(next(iterator), bench.mesh)  # as the trainer's loop does

    # More pairs than the other measurements' repetitions: the difference sought is a few %.
    ratio, constant, real = paired_ratio(
        lambda: bench.run(steps), lambda: bench.run(steps, next_batch), 3 * reps
    )
    constant, real = constant / steps, real / steps
    demand = bench.config.batch_size / constant
    return {
        "section": "pipeline",
        "task": bench.name,
        "cache_mb": bench.config.data.get("cache_mb", 0),
        "num_threads": bench.config.data.num_threads,
        "first_epoch_examples_per_s": first_epoch,
        "pipeline_examples_per_s": supply,
        "step_examples_per_s": demand,
        "first_epoch_supply_ratio": first_epoch / demand,
        "supply_ratio": supply / demand,
        "uncached_examples_per_s": uncached or supply,
        "uncached_supply_ratio": (uncached or supply) / demand,
        "constant_batch_step_ms": 1e3 * constant,
        "real_data_step_ms": 1e3 * real,
        "real_data_slowdown": ratio - 1.0,
    }
