"""big_vision ViT checkpoints (.npz): names, a NumPy ViT forward as reference, round trips."""

import jax
import numpy as np
import pytest

from mmjax.models.captioner import Captioner
from mmjax.models.dual_encoder import DualEncoder
from mmjax.weights import WeightsError, big_vision, tree

WIDTH, HEADS, MLP, PATCH, DEPTH = 16, 2, 32, 4, 2

# big_vision's vit.py names for a 2-block "tok"-pooled ViT (written out here, not derived).
BLOCK = [
    "LayerNorm_0/bias",
    "LayerNorm_0/scale",
    "LayerNorm_1/bias",
    "LayerNorm_1/scale",
    "MlpBlock_0/Dense_0/bias",
    "MlpBlock_0/Dense_0/kernel",
    "MlpBlock_0/Dense_1/bias",
    "MlpBlock_0/Dense_1/kernel",
] + [
    f"MultiHeadDotProductAttention_0/{proj}/{leaf}"
    for proj in ("key", "out", "query", "value")
    for leaf in ("bias", "kernel")
]
BIG_VISION_NAMES = sorted(
    ["cls", "embedding/bias", "embedding/kernel", "pos_embedding"]
    + [f"Transformer/encoderblock_{i}/{name}" for i in range(DEPTH) for name in BLOCK]
    + ["Transformer/encoder_norm/bias", "Transformer/encoder_norm/scale"]
)


def _captioner(class_token="no_posemb"):
    return Captioner(
        vocab_size=8,
        width=WIDTH,
        encoder_depth=DEPTH,
        decoder_depth=1,
        num_heads=HEADS,
        mlp_dim=MLP,
        stem="patch",
        patch_size=PATCH,
        class_token=class_token,
    )


def _random_params(model, images, seed=0):
    params = jax.jit(model.init)(
        jax.random.key(seed), images, np.ones((len(images), 1, 3), np.int32)
    )
    flat = tree.as_numpy(tree.flatten(params["params"]))
    # Random values everywhere (the initialisers leave biases and the class token at zero).
    rng = np.random.default_rng(seed)
    return {k: rng.normal(scale=0.3, size=v.shape).astype(np.float32) for k, v in flat.items()}


def _layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _numpy_vit(arrays, images):
    """big_vision's ViT ("tok" pooling) on images [B, H, W, 3] in [0, 1], from its .npz arrays."""
    x = images * 2.0 - 1.0  # big_vision's value_range(-1, 1)
    b, h, w, c = x.shape
    gh, gw = h // PATCH, w // PATCH
    patches = x.reshape(b, gh, PATCH, gw, PATCH, c).transpose(0, 1, 3, 2, 4, 5)
    x = patches.reshape(b, gh * gw, -1) @ arrays["embedding/kernel"].reshape(-1, WIDTH)
    x = x + arrays["embedding/bias"] + arrays["pos_embedding"]
    x = np.concatenate([np.broadcast_to(arrays["cls"], (b, 1, WIDTH)), x], axis=1)
    for i in range(DEPTH):
        block = f"Transformer/encoderblock_{i}/"
        p = {k[len(block) :]: v for k, v in arrays.items() if k.startswith(block)}
        attn = "MultiHeadDotProductAttention_0/"
        y = _layer_norm(x, p["LayerNorm_0/scale"], p["LayerNorm_0/bias"])
        q, k, v = (
            np.einsum("bld,dhk->blhk", y, p[f"{attn}{n}/kernel"]) + p[f"{attn}{n}/bias"]
            for n in ("query", "key", "value")
        )
        logits = np.einsum("bqhk,bphk->bhqp", q, k) / np.sqrt(q.shape[-1])
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        o = np.einsum("bhqp,bphk->bqhk", weights, v)
        x = x + np.einsum("bqhk,hkd->bqd", o, p[f"{attn}out/kernel"]) + p[f"{attn}out/bias"]
        y = _layer_norm(x, p["LayerNorm_1/scale"], p["LayerNorm_1/bias"])
        y = _gelu_tanh(y @ p["MlpBlock_0/Dense_0/kernel"] + p["MlpBlock_0/Dense_0/bias"])
        x = x + y @ p["MlpBlock_0/Dense_1/kernel"] + p["MlpBlock_0/Dense_1/bias"]
    return _layer_norm(
        x, arrays["Transformer/encoder_norm/scale"], arrays["Transformer/encoder_norm/bias"]
    )


def _encode(model, params, images):
    full = jax.jit(model.init)(jax.random.key(0), images, np.ones((len(images), 1, 3), np.int32))
    variables = {"params": tree.replace(full["params"], params)}
    return np.asarray(model.apply(variables, images, method=Captioner.encode))


def test_save_writes_big_vision_names_and_load_reads_them_back(tmp_path):
    images = np.random.default_rng(1).uniform(size=(2, 16, 16, 3)).astype(np.float32)
    model = _captioner()
    params = _random_params(model, images)
    path = str(tmp_path / "vit.npz")
    names = big_vision.save(params, path, class_token="no_posemb")
    assert names == BIG_VISION_NAMES  # the decoder's parameters are not a ViT's
    with np.load(path) as npz:
        assert sorted(npz.files) == BIG_VISION_NAMES
        arrays = {k: npz[k] for k in npz.files}
    # The file computes, in big_vision's own terms, what the mmjax tower computes.
    np.testing.assert_allclose(
        _numpy_vit(arrays, images), _encode(model, params, images), atol=2e-5
    )
    loaded = big_vision.load(path)
    image_tower = {k: v for k, v in params.items() if not k.startswith("decoder/")}
    assert sorted(loaded.params) == sorted(image_tower)
    for name, value in image_tower.items():
        np.testing.assert_array_equal(loaded.params[name], value, err_msg=name)
    assert loaded.model_entries("captioner") == dict(
        stem="patch",
        patch_size=PATCH,
        posemb="learn",
        patch_kernel=0,
        keep_tokens=0,
        token_selector="",
        class_token="no_posemb",
        patch_bias=True,
        width=WIDTH,
        encoder_depth=DEPTH,
        num_heads=HEADS,
        mlp_dim=MLP,
        activation="gelu",
        layer_norm_eps=1e-6,
        image_mean=(0.5, 0.5, 0.5),
        image_std=(0.5, 0.5, 0.5),
    )


def test_class_token_with_posemb_exports_to_the_same_function(tmp_path):
    # mmjax's "with_posemb" (HF layout) becomes big_vision's: cls + its posemb, N posembs.
    images = np.random.default_rng(2).uniform(size=(2, 16, 16, 3)).astype(np.float32)
    source = _captioner("with_posemb")
    params = _random_params(source, images, seed=3)
    path = str(tmp_path / "vit.npz")
    big_vision.save(params, path, class_token="with_posemb")
    loaded = big_vision.load(path)
    assert loaded.architecture["class_token"] == "no_posemb"
    np.testing.assert_allclose(
        _encode(_captioner("no_posemb"), loaded.params, images),
        _encode(source, params, images),
        atol=1e-5,
    )


def test_scanned_and_old_layouts_load_as_the_plain_one(tmp_path):
    images = np.zeros((1, 16, 16, 3), np.float32)
    params = _random_params(_captioner(), images, seed=4)
    plain = str(tmp_path / "plain.npz")
    big_vision.save(params, plain)
    with np.load(plain) as npz:
        arrays = {k: npz[k] for k in npz.files}
    scanned = {k: v for k, v in arrays.items() if "encoderblock_" not in k}
    for name in BLOCK:
        stack = [arrays[f"Transformer/encoderblock_{i}/{name}"] for i in range(DEPTH)]
        scanned[f"Transformer/encoderblock/{name}"] = np.stack(stack)
    # Old ViTs: one more posemb row for the class token, under Transformer/, in params/.
    old_pe = np.random.default_rng(5).normal(size=(1, 1, WIDTH)).astype(np.float32)
    scanned["Transformer/posembed_input/pos_embedding"] = np.concatenate(
        [old_pe, scanned.pop("pos_embedding")], axis=1
    )
    scanned["cls"] = scanned["cls"] - old_pe
    np.savez(tmp_path / "scanned.npz", **{f"params/{k}": v for k, v in scanned.items()})
    loaded = big_vision.load(str(tmp_path / "scanned.npz")).params
    reference = big_vision.load(plain).params
    assert sorted(loaded) == sorted(reference)
    for name in reference:
        np.testing.assert_allclose(loaded[name], reference[name], atol=1e-6, err_msg=name)


def test_map_head_round_trip(tmp_path):
    model = DualEncoder(
        vocab_size=8,
        stem="patch",
        patch_size=PATCH,
        width=WIDTH,
        num_heads=HEADS,
        mlp_dim=MLP,
        image_pool="map",
    )
    images = np.zeros((1, 16, 16, 3), np.float32)
    flat = tree.flatten(
        jax.eval_shape(model.init, jax.random.key(0), images, np.ones((1, 4), np.int32))["params"]
    )
    params = {k: np.full(v.shape, 0.5, np.float32) for k, v in flat.items()}
    path = str(tmp_path / "map.npz")
    names = big_vision.save(params, path)
    assert "MAPHead_0/probe" in names and "MAPHead_0/MlpBlock_0/Dense_1/kernel" in names
    loaded = big_vision.load(path)
    assert loaded.params["image_map/probe"].shape == params["image_map/probe"].shape
    assert loaded.architecture["image_pool"] == "map"
    assert {k for k in params if k.startswith("image_map/")} <= set(loaded.params)


def test_unexportable_and_sincos_towers_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="stem/embedding_norm/scale has no place"):
        big_vision.save({"stem/embedding_norm/scale": np.ones(3)}, str(tmp_path / "x.npz"))
    np.savez(tmp_path / "sincos.npz", **{"embedding/kernel": np.ones((4, 4, 3, 8))})
    with pytest.raises(WeightsError, match="sincos2d"):
        big_vision.load(str(tmp_path / "sincos.npz"))
