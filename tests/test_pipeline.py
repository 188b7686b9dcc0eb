import numpy as np
import pytest

from mmjax.data import pipeline


def _source(n):
    return [{"id": np.int64(i), "x": np.full((3,), i, np.float32)} for i in range(n)]


def _pre(record):
    return {"id": record["id"], "x": record["x"] * 2}


def test_train_shards_of_two_processes_are_disjoint_and_cover_the_split():
    n, batch = 40, 4
    seen = []
    for process in range(2):
        it = iter(
            pipeline.train_dataset(
                _source(n), _pre, batch, seed=1, process_index=process, process_count=2
            )
        )
        ids = np.concatenate([next(it)["id"] for _ in range(n // 2 // batch)])
        assert len(set(ids.tolist())) == n // 2  # one epoch of this shard, no repeats
        seen.append(set(ids.tolist()))
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(n))


def test_train_epochs_are_reshuffled_and_seeded():
    def first_two_epochs(seed):
        it = iter(pipeline.train_dataset(_source(12), _pre, 3, seed=seed))
        return np.concatenate([next(it)["id"] for _ in range(8)])

    a = first_two_epochs(0)
    np.testing.assert_array_equal(a, first_two_epochs(0))
    assert sorted(a[:12].tolist()) == list(range(12))
    assert not np.array_equal(a[:12], a[12:])
    assert not np.array_equal(a, first_two_epochs(1))


@pytest.mark.parametrize("n,batch,processes", [(23, 4, 2), (10, 5, 1), (7, 3, 3)])
def test_eval_padding_mask_counts_each_example_once(n, batch, processes):
    counted = []
    num_batches = pipeline.eval_num_batches(n, batch, processes)
    for process in range(processes):
        batches = list(pipeline.eval_dataset(_source(n), _pre, batch, process, processes))
        assert len(batches) == num_batches  # every process runs the same number of steps
        for b in batches:
            assert b["id"].shape == (batch,)
            counted.extend(b["id"][b["_mask"]].tolist())
    assert sorted(counted) == list(range(n))


def test_restored_iterator_yields_the_same_next_batches():
    ds = pipeline.train_dataset(_source(30), _pre, 4, seed=3)
    it = iter(ds)
    for _ in range(5):
        next(it)
    state = it.get_state()
    expected = [next(it)["id"] for _ in range(6)]
    resumed = iter(pipeline.train_dataset(_source(30), _pre, 4, seed=3))
    resumed.set_state(state)
    for want in expected:
        np.testing.assert_array_equal(next(resumed)["id"], want)


def test_too_small_shard_is_an_error():
    with pytest.raises(ValueError, match="fewer than its batch"):
        pipeline.train_dataset(_source(3), _pre, 4, seed=0)


def test_global_batches_do_not_depend_on_the_number_of_processes():
    n, global_batch = 40, 8
    single = iter(pipeline.train_dataset(_source(n), _pre, global_batch, seed=3))
    shards = [
        iter(pipeline.train_dataset(_source(n), _pre, global_batch // 2, 3, p, 2)) for p in (0, 1)
    ]
    for _ in range(12):  # more than two epochs
        together = np.concatenate([next(it)["id"] for it in shards])
        assert sorted(together.tolist()) == sorted(next(single)["id"].tolist())


def test_cached_pipeline_gives_the_same_batches_and_reads_each_record_once():
    reads = []

    def counted(record):
        reads.append(int(record["id"]))
        return _pre(record)

    def batches(cache_mb, num_threads=2):
        it = iter(
            pipeline.train_dataset(
                _source(24),
                counted,
                3,
                seed=2,
                process_index=1,
                process_count=2,
                num_threads=num_threads,
                cache_mb=cache_mb,
            )
        )
        return [next(it) for _ in range(12)]  # three epochs of this process's 12 examples

    plain = batches(0)
    for cached in (batches(1), batches(1, num_threads=0)):
        for a, b in zip(plain, cached, strict=True):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
    # Read threads may race for a record in flight; without them each is read once.
    reads.clear()
    seen = np.concatenate([b["id"] for b in batches(1, num_threads=0)]).tolist()
    assert len(set(seen)) < len(seen)  # later epochs repeat records...
    assert sorted(reads) == sorted(set(seen))  # ...which are read once each


@pytest.mark.parametrize("cache_mb", [0, 1])
def test_batches_spanning_epochs_hold_each_example_once_per_epoch(cache_mb):
    # Two processes, 26 examples: each process's 13 per epoch come in batches of 3, which
    # straddle the epochs.
    ids = []
    for process in (0, 1):
        it = iter(pipeline.train_dataset(_source(26), _pre, 3, 5, process, 2, cache_mb=cache_mb))
        batches = [next(it) for _ in range(13)]  # three epochs
        for batch in batches:
            np.testing.assert_array_equal(batch["x"][:, 0], 2 * batch["id"])  # its own records
        ids.append(np.concatenate([b["id"] for b in batches]))
    epochs = [np.concatenate([i[e * 13 : (e + 1) * 13] for i in ids]) for e in range(3)]
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(26))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])


def test_cache_stops_growing_at_its_budget():
    reads = []

    def counted(record):
        reads.append(int(record["id"]))
        return _pre(record)

    example_bytes = 8 + 3 * 4  # id (int64) and x (3 float32)
    cache = pipeline.CachedExamples(_source(10), counted, budget_bytes=4 * example_bytes)
    for _ in range(2):
        for i in range(10):
            np.testing.assert_array_equal(cache[i]["x"], np.full((3,), 2 * i, np.float32))
    assert cache.cached_bytes == 4 * example_bytes
    assert reads == list(range(10)) + list(range(4, 10))  # the first four were kept


def test_negative_cache_size_is_an_error():
    with pytest.raises(ValueError, match="cache_mb=-1"):
        pipeline.train_dataset(_source(8), _pre, 2, seed=0, cache_mb=-1)


def test_a_budget_below_one_example_keeps_nothing():
    cache = pipeline.CachedExamples(_source(4), _pre, budget_bytes=10)  # an example is 20 bytes
    np.testing.assert_array_equal(cache.batch([3, 1])["x"][:, 0], [6, 2])
    assert cache.cached_bytes == 0
