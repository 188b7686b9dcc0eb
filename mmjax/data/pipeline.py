"""Grain input pipelines over random-access sources (TFDS ArrayRecord data sources).

Train: shard by process, shuffle with a seed (a new order every epoch), repeat, preprocess,
batch, prefetch; optionally keep the preprocessed examples in memory after their first read.
The iterator's state (`get_state()`, a small JSON-able dict) is saved with each checkpoint, so
a resumed run sees exactly the batches an uninterrupted one would.

Eval: shard by process and pad every process to the same number of full batches; each
example carries `_mask` (True for real examples, False for padding), so nothing is dropped
and nothing is counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import grain
import numpy as np

from mmjax.config_utils import ConfigError

Example = dict[str, np.ndarray]


def _read_options(num_threads: int) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(2, 4 * num_threads))


def process_shard(num_examples: int, process_index: int, process_count: int) -> np.ndarray:
    """Indices [ceil(n / count)] or fewer that process `process_index` reads: a strided slice.

    Strided shards of different processes are disjoint and together cover range(n).
    """
    return np.arange(process_index, num_examples, process_count)


class CachedExamples:
    """`preprocess(source[i])` for each index i, kept in memory up to `budget_bytes` in all.

    A random-access source (len and [i]) for epochs after the first: on a small dataset
    reading and decoding a record costs more than the train step's share of it. Examples are
    kept in the order they are first asked for until their arrays' bytes would pass the
    budget; later ones are read again each time. `preprocess` must be deterministic (it is
    called once per index while the budget lasts), and callers must not modify the arrays.
    """

    def __init__(self, source: Sequence, preprocess: Callable[[dict], Example], budget_bytes):
        self._source = source
        self._preprocess = preprocess
        self._budget = budget_bytes
        self._used = 0
        self._cache: dict[int, Example] = {}

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> Example:
        example = self._cache.get(index)
        if example is None:
            example = self._preprocess(self._source[index])
            size = sum(np.asarray(v).nbytes for v in example.values())
            if self._used + size <= self._budget:
                self._used += size
                self._cache[index] = example
        return example

    @property
    def cached_bytes(self) -> int:
        """Bytes of the examples kept so far."""
        return self._used


def train_dataset(
    source: Sequence,
    preprocess: Callable[[dict], Example],
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 2,
    cache_mb: float = 0,
) -> grain.IterDataset:
    """An endless dataset of per-process batches: dicts of arrays with leading dim batch_size.

    Args:
      source: random-access records (len and __getitem__).
      preprocess: record -> dict of numpy arrays (one example).
      batch_size: examples per batch on this process.
      seed: shuffle seed; epochs are reshuffled deterministically from it.
      process_index, process_count: this process's shard of the source.
      num_threads: reader threads.
      cache_mb: keep up to this many MiB of preprocessed examples in memory
        (`CachedExamples`; 0: none). The batches are the same either way.

    Every process shuffles the whole source the same way and takes every `process_count`-th
    example of that one endless sequence, from `process_index` on. So the union of the
    processes' k-th batches is the k-th batch of a single process reading with
    batch_size * process_count: the global batches do not depend on the number of processes,
    and each process reads only its own examples.
    """
    if len(source) // process_count < batch_size:
        raise ValueError(
            f"process {process_index} holds {len(source) // process_count} training examples, "
            f"fewer than its batch of {batch_size}"
        )
    if cache_mb < 0:
        raise ConfigError(f"data.cache_mb={cache_mb} must be >= 0 (0: no cache)")
    if cache_mb > 0:
        source = CachedExamples(source, preprocess, cache_mb * 2**20)
    ds = grain.MapDataset.source(source).seed(seed).shuffle().repeat()
    ds = ds[process_index::process_count]
    if cache_mb <= 0:
        ds = ds.map(preprocess)
    ds = ds.batch(batch_size, drop_remainder=True)
    return ds.to_iter_dataset(_read_options(num_threads))


def eval_num_batches(num_examples: int, batch_size: int, process_count: int = 1) -> int:
    """Batches each process runs so that every example of the split is seen once."""
    return max(1, math.ceil(math.ceil(num_examples / process_count) / batch_size))


def eval_dataset(
    source: Sequence,
    preprocess: Callable[[dict], Example],
    batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 2,
) -> grain.IterDataset:
    """Finite per-process eval batches, padded to full size, with a boolean `_mask` [batch].

    Every process yields `eval_num_batches(len(source), batch_size, process_count)` batches;
    padding repeats the shard's first example with `_mask` False.
    """
    indices = process_shard(len(source), process_index, process_count)
    if len(indices) == 0:
        raise ValueError(
            f"eval split of {len(source)} examples is too small for {process_count} processes"
        )
    total = eval_num_batches(len(source), batch_size, process_count) * batch_size

    def load(position: int) -> Example:
        real = position < len(indices)
        example = preprocess(source[int(indices[position if real else 0])])
        example["_mask"] = np.asarray(real)
        return example

    ds = grain.MapDataset.range(total).map(load).batch(batch_size, drop_remainder=True)
    return ds.to_iter_dataset(_read_options(num_threads))
