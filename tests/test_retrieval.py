"""Image-text retrieval: contrastive losses (unsharded, and sharded over 8 fake CPU devices) and
Recall@K (ties, chunking, the evaluator over padded batches).

The 8-device checks run in a subprocess (this file is its entry point:
`python tests/test_retrieval.py sharded OUT.npz`).
"""

import itertools
import math
import os
import re
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.evaluators import build_evaluator
from mmjax.evaluators.retrieval import recall_at_k
from mmjax.models import contrastive

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _unit(seed, n, d):
    x = np.random.default_rng(seed).normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------- losses: NumPy references


def _numpy_clip(img, txt, scale):
    """(mean_i -log softmax_j(l_ij)[i] + mean_j -log softmax_i(l_ij)[j]) / 2, float64."""
    img, txt = img.astype(np.float64), txt.astype(np.float64)
    b = img.shape[0]
    logits = scale * img @ txt.T
    i2t = t2i = 0.0
    for i in range(b):
        i2t -= logits[i, i] - np.log(np.sum(np.exp(logits[i, :])))
        t2i -= logits[i, i] - np.log(np.sum(np.exp(logits[:, i])))
    return (i2t / b + t2i / b) / 2


def _numpy_siglip(img, txt, scale, bias):
    """-1/B sum_ij log(1 / (1 + exp(-z_ij (scale x_i.y_j + bias)))), float64."""
    img, txt = img.astype(np.float64), txt.astype(np.float64)
    b = img.shape[0]
    total = 0.0
    for i in range(b):
        for j in range(b):
            z = 1.0 if i == j else -1.0
            total += np.log(1.0 / (1.0 + np.exp(-z * (scale * img[i] @ txt[j] + bias))))
    return -total / b


@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0])
def test_softmax_loss_matches_numpy(scale):
    img, txt = _unit(0, 6, 5), _unit(1, 6, 5)
    got = contrastive.softmax_contrastive_loss(img, txt, scale)
    np.testing.assert_allclose(got, _numpy_clip(img, txt, scale), rtol=2e-6)


@pytest.mark.parametrize("scale,bias", [(1.0, 0.0), (10.0, -10.0), (30.0, 2.0)])
def test_sigmoid_loss_matches_numpy(scale, bias):
    img, txt = _unit(2, 6, 5), _unit(3, 6, 5)
    got = contrastive.sigmoid_contrastive_loss(img, txt, scale, bias)
    np.testing.assert_allclose(got, _numpy_siglip(img, txt, scale, bias), rtol=2e-6)


def test_bfloat16_embeddings_give_a_float32_loss():
    img, txt = _unit(4, 6, 8), _unit(5, 6, 8)
    loss = contrastive.softmax_contrastive_loss(
        jnp.asarray(img, jnp.bfloat16), jnp.asarray(txt, jnp.bfloat16), 10.0
    )
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, _numpy_clip(img, txt, 10.0), rtol=2e-2)


def test_one_device_mesh_and_bad_batch_sizes():
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    img, txt = _unit(6, 4, 3), _unit(7, 4, 3)
    np.testing.assert_allclose(
        contrastive.sharded_sigmoid_contrastive_loss(img, txt, 5.0, -2.0, mesh),
        contrastive.sigmoid_contrastive_loss(img, txt, 5.0, -2.0),
        rtol=1e-6,
    )
    three = types.SimpleNamespace(shape={"data": 3})  # only its axis sizes are read
    with pytest.raises(ValueError, match="batch size 4 does not split over the 3 devices"):
        contrastive.sharded_softmax_contrastive_loss(img, txt, 5.0, three)


# ---------------------------------------------------------------- losses: 8 devices, subprocess

BATCH, DIM, SCALE, BIAS = 16, 5, 7.0, -3.0
MESHES = {"data8": ((8,), ("data",)), "data4_fsdp2": ((4, 2), ("data", "fsdp"))}


def _sharded_child(out_path: str) -> None:
    """Loss and gradients (img, txt, scale[, bias]) of each loss, unsharded and on each mesh."""
    from jax.sharding import AxisType, NamedSharding, PartitionSpec

    assert len(jax.devices()) == 8
    img, txt = _unit(10, BATCH, DIM), _unit(11, BATCH, DIM)
    out = {}

    def record(name, fn, args, shard=None):
        grad_fn = jax.jit(jax.value_and_grad(fn, argnums=tuple(range(len(args)))))
        if shard is not None:
            args = (jax.device_put(args[0], shard), jax.device_put(args[1], shard), *args[2:])
        loss, grads = grad_fn(*args)
        out[f"{name}/loss"] = np.asarray(loss)
        for i, g in enumerate(grads):
            out[f"{name}/grad{i}"] = np.asarray(g)
        # Per-device array shapes of the compiled (SPMD-partitioned) forward and backward.
        hlo = grad_fn.lower(*args).compile().as_text()
        out[f"{name}/shapes"] = np.asarray(" ".join(sorted(set(re.findall(r"f32\[[\d,]*\]", hlo)))))

    record("softmax/one", contrastive.softmax_contrastive_loss, (img, txt, SCALE))
    record("sigmoid/one", contrastive.sigmoid_contrastive_loss, (img, txt, SCALE, BIAS))
    for name, (shape, axes) in MESHES.items():
        mesh = jax.make_mesh(shape, axes, axis_types=(AxisType.Auto,) * len(axes))
        shard = NamedSharding(mesh, PartitionSpec(axes))

        def softmax(i, t, s, mesh=mesh):
            return contrastive.sharded_softmax_contrastive_loss(i, t, s, mesh)

        def sigmoid(i, t, s, b, mesh=mesh):
            return contrastive.sharded_sigmoid_contrastive_loss(i, t, s, b, mesh)

        record(f"softmax/{name}", softmax, (img, txt, SCALE), shard)
        record(f"sigmoid/{name}", sigmoid, (img, txt, SCALE, BIAS), shard)
    np.savez(out_path, **out)


@pytest.fixture(scope="module")
def sharded_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("contrastive") / "runs.npz"
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
    result = subprocess.run(
        [sys.executable, __file__, "sharded", str(out)],
        cwd=ROOT,
        env=dict(os.environ, XLA_FLAGS=flags),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(out))


@pytest.mark.parametrize("mesh", list(MESHES))
@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
def test_sharded_losses_and_gradients_equal_the_unsharded_ones(sharded_runs, loss, mesh):
    runs = sharded_runs
    np.testing.assert_allclose(runs[f"{loss}/{mesh}/loss"], runs[f"{loss}/one/loss"], rtol=1e-6)
    grads = sorted(k.split("/")[-1] for k in runs if k.startswith(f"{loss}/one/grad"))
    assert len(grads) == (3 if loss == "softmax" else 4)
    for g in grads:
        want = runs[f"{loss}/one/{g}"]
        assert np.abs(want).max() > 1e-3  # a gradient that really flows
        np.testing.assert_allclose(runs[f"{loss}/{mesh}/{g}"], want, rtol=1e-5, atol=1e-6)
    img, txt = _unit(10, BATCH, DIM), _unit(11, BATCH, DIM)
    want = (
        _numpy_clip(img, txt, SCALE) if loss == "softmax" else _numpy_siglip(img, txt, SCALE, BIAS)
    )
    np.testing.assert_allclose(runs[f"{loss}/{mesh}/loss"], want, rtol=2e-6)


@pytest.mark.parametrize("mesh", list(MESHES))
def test_no_device_holds_the_full_logit_matrix(sharded_runs, mesh):
    # 8 devices, B = 16: 2 rows each. CLIP holds its rows [2, 16] of logits, never [16, 16];
    # the SigLIP ring holds [2, 2] blocks and no array with a global-batch dimension at all.
    softmax = sharded_runs[f"softmax/{mesh}/shapes"].item().split()
    sigmoid = sharded_runs[f"sigmoid/{mesh}/shapes"].item().split()
    assert "f32[2,16]" in softmax and "f32[16,16]" not in softmax
    assert "f32[2,2]" in sigmoid
    assert not [s for s in sigmoid if "16" in s], sigmoid
    assert "f32[16,16]" in sharded_runs["sigmoid/one/shapes"].item().split()  # the check bites


# ---------------------------------------------------------------- Recall@K


def _brute_recall(img, txt, ids, ks, optimistic=False):
    """Sorts every candidate list; on equal scores wrong candidates go first (pessimistic)."""
    scores = img.astype(np.float64) @ txt.astype(np.float64).T  # [Ni, Nt]
    sign = -1 if optimistic else 1
    out = {}
    for k in ks:
        i2t = []
        for i in range(img.shape[0]):
            right = [ids[t] == i for t in range(txt.shape[0])]
            if not any(right):
                continue
            order = sorted(range(txt.shape[0]), key=lambda t: (-scores[i, t], sign * right[t]))
            i2t.append(any(right[t] for t in order[:k]))
        t2i = []
        for t in range(txt.shape[0]):
            order = sorted(range(img.shape[0]), key=lambda i: (-scores[i, t], sign * (i == ids[t])))
            t2i.append(ids[t] in order[:k])
        out[f"i2t_r{k}"] = sum(i2t) / len(i2t)
        out[f"t2i_r{k}"] = sum(t2i) / len(t2i)
    return out


def _tied_split(seed, num_images=24, dim=3):
    """Small-integer embeddings: every dot product is exact, and many are exactly tied."""
    rng = np.random.default_rng(seed)
    img = rng.integers(-1, 2, size=(num_images, dim)).astype(np.float32)
    img[5] = img[4]  # two identical images
    counts = rng.integers(0, 4, num_images)  # 0 to 3 captions per image
    counts[:2] = (0, 3)
    ids = np.repeat(np.arange(num_images), counts)
    # Captions are their image plus noise on the same grid, so recall is neither 0 nor 1.
    noise = rng.integers(-1, 2, size=(ids.size, dim)) * (rng.random((ids.size, 1)) < 0.5)
    txt = (img[ids] + noise).astype(np.float32)
    order = rng.permutation(ids.size)  # captions need not be grouped by image
    return img, txt[order], ids[order]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_matches_brute_force_with_ties(seed):
    img, txt, ids = _tied_split(seed)
    ks = (1, 2, 5, 10)
    got = recall_at_k(img, txt, ids, ks)
    want = _brute_recall(img, txt, ids, ks)
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    # The data really has ties that decide hits: breaking them the other way changes recall.
    assert _brute_recall(img, txt, ids, ks, optimistic=True) != want
    assert got["i2t_queries"] == len(set(ids.tolist())) and got["t2i_queries"] == ids.size


def test_ties_count_against_the_query():
    # Two identical images with one identical caption each: all four scores tie.
    img = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    txt = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    got = recall_at_k(img, txt, np.array([0, 1, 2]), ks=(1, 2))
    assert got["i2t_r1"] == pytest.approx(1 / 3) and got["t2i_r1"] == pytest.approx(1 / 3)
    assert got["i2t_r2"] == 1.0 and got["t2i_r2"] == 1.0
    # A constant model scores nothing below K = number of wrong candidates.
    zeros = np.zeros((3, 2), np.float32)
    assert recall_at_k(zeros, zeros, np.array([0, 1, 2]), ks=(2, 3))["t2i_r2"] == 0.0
    assert recall_at_k(zeros, zeros, np.array([0, 1, 2]), ks=(2, 3))["t2i_r3"] == 1.0


@pytest.mark.parametrize("chunk_size", [1, 2, 7, 1000])
def test_chunked_equals_unchunked(chunk_size):
    ks = (1, 3, 5)
    img, txt, ids = _tied_split(3, num_images=40, dim=4)
    assert recall_at_k(img, txt, ids, ks, chunk_size=chunk_size) == recall_at_k(
        img, txt, ids, ks, chunk_size=10**6
    )
    img, txt = _unit(20, 40, 6), _unit(21, 90, 6)
    ids = np.random.default_rng(0).integers(0, 40, 90)
    assert recall_at_k(img, txt, ids, ks, chunk_size=chunk_size) == recall_at_k(
        img, txt, ids, ks, chunk_size=10**6
    )


def test_chance_levels():
    def enumerate_chance(n, m, k):  # over all orders of n candidates, m of them right
        hits = [any(p < m for p in order[:k]) for order in itertools.permutations(range(n))]
        return sum(hits) / len(hits)

    img = _unit(30, 2, 4)
    txt = _unit(31, 5, 4)
    ids = np.array([0, 0, 1, 1, 1])  # image 0 owns 2 of 5 captions, image 1 owns 3
    got = recall_at_k(img, txt, ids, ks=(1, 2, 3))
    for k in (1, 2, 3):
        want = (enumerate_chance(5, 2, k) + enumerate_chance(5, 3, k)) / 2
        assert got[f"i2t_chance_r{k}"] == pytest.approx(want)
        assert got[f"t2i_chance_r{k}"] == pytest.approx(min(1.0, k / 2))
    one_each = recall_at_k(_unit(32, 7, 4), _unit(33, 7, 4), np.arange(7), ks=(1, 5))
    assert one_each["i2t_chance_r1"] == pytest.approx(1 / 7)
    assert one_each["i2t_chance_r5"] == pytest.approx(5 / 7)
    assert math.isclose(enumerate_chance(5, 2, 2), 1 - math.comb(3, 2) / math.comb(5, 2))


# ---------------------------------------------------------------- evaluator


def _padded_batches(img, txt_slots, valid, batch_size, mask_in="predictions"):
    """Splits [N, ...] arrays into padded batches; padding rows copy real ones (as bait)."""
    n = img.shape[0]
    for start in range(0, n, batch_size):
        rows = np.arange(start, start + batch_size)
        real = rows < n
        rows = np.where(real, rows, 0)
        predictions = {"image_embedding": img[rows], "text_embedding": txt_slots[rows]}
        batch = {"_mask": real}
        text_mask = np.where(real[:, None], valid[rows], True)
        (predictions if mask_in == "predictions" else batch)["text_mask"] = text_mask
        yield batch, predictions


@pytest.mark.parametrize("mask_in", ["predictions", "batch"])
def test_evaluator_counts_each_example_once(mask_in):
    img, txt, ids = _tied_split(4, num_images=10, dim=3)
    # Lay the captions out as [N, R=3, D] slots with a validity mask.
    slots = np.zeros((10, 3, 3), np.float32)
    valid = np.zeros((10, 3), bool)
    flat_txt, flat_ids = [], []
    for i in range(10):
        own = txt[ids == i]
        slots[i, : len(own)] = own
        valid[i, : len(own)] = True
        flat_txt.extend(own)
        flat_ids.extend([i] * len(own))
    config = {"type": "retrieval", "ks": (1, 2, 5), "chunk_size": 3, "batch_size": 4}
    evaluator = build_evaluator("test", dict(config, normalize=False))
    got = evaluator.evaluate(_padded_batches(img, slots, valid, 4, mask_in))
    want = recall_at_k(img, np.stack(flat_txt), np.array(flat_ids), ks=(1, 2, 5))
    assert got == want
    assert got["t2i_queries"] == valid.sum() and got["i2t_queries"] == valid.any(1).sum()

    normalized = build_evaluator("test", config).evaluate(
        _padded_batches(img, slots, valid, 4, mask_in)
    )
    norm = np.maximum(np.linalg.norm(img, axis=1, keepdims=True), 1e-12)
    tnorm = np.linalg.norm(np.stack(flat_txt), axis=1, keepdims=True)
    want = recall_at_k(
        img / norm, np.stack(flat_txt) / np.maximum(tnorm, 1e-12), flat_ids, (1, 2, 5)
    )
    assert normalized == pytest.approx(want)


def test_evaluator_accepts_one_caption_per_image():
    img, txt = _unit(40, 9, 4), _unit(41, 9, 4)
    batches = [
        ({"_mask": np.array([True] * 5)}, {"image_embedding": img[:5], "text_embedding": txt[:5]}),
        (
            {"_mask": np.array([True] * 4 + [False])},
            {"image_embedding": img[[5, 6, 7, 8, 0]], "text_embedding": txt[[5, 6, 7, 8, 0]]},
        ),
    ]
    got = build_evaluator("test", {"type": "retrieval", "ks": [1, 3]}).evaluate(batches)
    assert got == pytest.approx(recall_at_k(img, txt, np.arange(9), ks=(1, 3)))
    with pytest.raises(ValueError, match="evals.test"):
        build_evaluator("test", {"type": "retrieval", "k": 1})


def test_recall_per_caption_slot_equals_recall_over_that_slots_captions():
    # 12 images x 3 caption slots, some slots empty; tied small-integer embeddings.
    img, txt, _ = _tied_split(7, num_images=12, dim=3)
    rng = np.random.default_rng(8)
    slots = np.stack([img + rng.integers(-1, 2, size=img.shape) for _ in range(3)], axis=1)
    slots = slots.astype(np.float32)  # [12, 3, 3]
    valid = rng.random((12, 3)) < 0.8
    valid[0] = False  # an image with no caption at all
    names = ("any_order", "left_to_right", "counts")
    config = {"type": "retrieval", "ks": (1, 3), "normalize": False, "caption_slots": names}
    got = build_evaluator("test", dict(config, bootstrap_samples=50)).evaluate(
        _padded_batches(img, slots, valid, 5)
    )
    owners = np.broadcast_to(np.arange(12)[:, None], valid.shape)
    for r, name in enumerate(names):
        # The slot's captions alone: t2i ranks are per caption against all images, so the same.
        want = recall_at_k(img, slots[:, r][valid[:, r]], owners[:, r][valid[:, r]], ks=(1, 3))
        for k in (1, 3):
            assert got[f"t2i_r{k}/{name}"] == pytest.approx(want[f"t2i_r{k}"]), (name, k)
            assert got[f"i2t_r{k}/{name}"] == pytest.approx(want[f"i2t_r{k}"]), (name, k)
            low, high = got[f"t2i_r{k}/{name}.ci_low"], got[f"t2i_r{k}/{name}.ci_high"]
            assert low <= got[f"t2i_r{k}/{name}"] <= high
    flat = recall_at_k(img, slots[valid], owners[valid], ks=(1, 3))
    assert got["t2i_r1"] == pytest.approx(flat["t2i_r1"])
    # The slots really differ, so a per-slot figure is not the overall one relabelled.
    assert len({round(got[f"i2t_r1/{n}"], 6) for n in names}) > 1
    with pytest.raises(ValueError, match="caption_slots names 2"):
        build_evaluator("test", dict(config, caption_slots=names[:2])).evaluate(
            _padded_batches(img, slots, valid, 5)
        )


if __name__ == "__main__":
    if sys.argv[1] == "sharded":
        _sharded_child(sys.argv[2])
