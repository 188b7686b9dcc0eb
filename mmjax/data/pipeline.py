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
import threading
from collections.abc import Callable, Sequence

import grain
import numpy as np
from grain.experimental import index_shuffle

from mmjax.config_utils import ConfigError

Example = dict[str, np.ndarray]


def _read_options(num_threads: int) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(2, 4 * num_threads))


def process_shard(num_examples: int, process_index: int, process_count: int) -> np.ndarray:
    """Indices [ceil(n / count)] or fewer that process `process_index` reads: a strided slice.

    Strided shards of different processes are disjoint and together cover range(n).
    """
    return np.arange(process_index, num_examples, process_count)


def _stack(examples: list[Example]) -> Example:
    return {key: np.stack([e[key] for e in examples]) for key in examples[0]}


class CachedExamples:
    """`preprocess(source[i])` for each index i, kept in memory up to `budget_bytes` in all.

    A random-access source (len and [i]) for epochs after the first: on a small dataset
    reading and decoding a record costs more than the train step's share of it. Examples are
    kept in the order they are first asked for until their arrays' bytes would pass the
    budget; later ones are read again each time. They are kept stacked, one array per key
    with a row per kept example, so that `batch` gathers a batch with one indexing per key.
    `preprocess` must be deterministic (it is called once per index while the budget lasts)
    and give every example the same keys, shapes and dtypes; callers must not modify the
    arrays. Safe to call from several reader threads.
    """

    def __init__(self, source: Sequence, preprocess: Callable[[dict], Example], budget_bytes):
        self._source = source
        self._preprocess = preprocess
        self._budget = budget_bytes
        self._rows: dict[int, int] = {}  # source index -> row of the stacked arrays
        self._arrays: Example | None = None
        self._capacity = 0  # rows of the stacked arrays
        self._example_bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._source)

    def _keep(self, index: int, example: Example) -> None:
        with self._lock:
            if index in self._rows:
                return
            if self._arrays is None:
                self._example_bytes = sum(np.asarray(v).nbytes for v in example.values())
                self._capacity = min(
                    len(self._source), int(self._budget // max(self._example_bytes, 1))
                )
                self._arrays = {
                    k: np.empty((self._capacity, *np.shape(v)), np.asarray(v).dtype)
                    for k, v in example.items()
                }
            row = len(self._rows)
            if row >= self._capacity:
                return
            for key, array in self._arrays.items():
                value = np.asarray(example[key])
                if value.shape != array.shape[1:] or value.dtype != array.dtype:
                    raise ValueError(
                        f"example {index}: {key!r} is {value.dtype}{list(value.shape)}, but "
                        f"earlier examples' are {array.dtype}{list(array.shape[1:])}"
                    )
                array[row] = value
            self._rows[index] = row  # published once its row is written

    def __getitem__(self, index: int) -> Example:
        row = self._rows.get(index)
        if row is not None:
            return {key: array[row] for key, array in self._arrays.items()}
        example = self._preprocess(self._source[index])
        self._keep(index, example)
        return example

    def batch(self, indices: Sequence[int]) -> Example:
        """The examples of `indices`, stacked: dict of arrays [len(indices), ...]."""
        rows = [self._rows.get(int(i)) for i in indices]
        if None in rows:
            return _stack([self[int(i)] for i in indices])
        return {key: array[rows] for key, array in self._arrays.items()}

    @property
    def cached_bytes(self) -> int:
        """Bytes of the examples kept so far."""
        return len(self._rows) * self._example_bytes


_ENDLESS = 2**62  # batches in a training dataset: it never ends


class ShuffledBatchIndices:
    """The source indices [batch_size] of batch `step` of one process's endless training batches.

    Epoch e is a permutation of range(num_examples): `grain.experimental.index_shuffle` (a
    keyed bijection, so no permutation is held in memory) with key seed + e. The epochs follow
    each other as one endless sequence, of which process `process_index` takes every
    `process_count`-th element from `process_index` on, batch_size at a time; a batch may span
    two epochs.
    """

    def __init__(self, num_examples, batch_size, seed, process_index=0, process_count=1):
        self._n, self._batch, self._seed = num_examples, batch_size, seed
        self._process, self._count = process_index, process_count

    def __call__(self, step: int) -> np.ndarray:
        """Indices [batch_size] (int64) of batch `step`."""
        positions = self._process + self._count * np.arange(
            step * self._batch, (step + 1) * self._batch
        )
        epochs, offsets = np.divmod(positions, self._n)
        return np.asarray(
            [
                index_shuffle(
                    int(i), max_index=self._n - 1, seed=(self._seed + int(e)) % 2**32, rounds=4
                )
                for e, i in zip(epochs, offsets)
            ],
            np.int64,
        )


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

    Batches are made of indices (`ShuffledBatchIndices`), then read as a whole; with the cache,
    by one gather per key, far less reader CPU than grain shuffling and batching the examples
    one by one: time taken from the train step's cores on a small machine
    (`python -m experiments.benchmark` measures the pipeline against the step).
    """
    if len(source) // process_count < batch_size:
        raise ValueError(
            f"process {process_index} holds {len(source) // process_count} training examples, "
            f"fewer than its batch of {batch_size}"
        )
    if cache_mb < 0:
        raise ConfigError(f"data.cache_mb={cache_mb} must be >= 0 (0: no cache)")
    if cache_mb > 0:
        read_batch = CachedExamples(source, preprocess, cache_mb * 2**20).batch
    else:

        def read_batch(indices):
            return _stack([preprocess(source[int(i)]) for i in indices])

    indices = ShuffledBatchIndices(len(source), batch_size, seed, process_index, process_count)
    ds = grain.MapDataset.range(_ENDLESS).map(lambda step: read_batch(indices(step)))
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
