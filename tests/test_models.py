import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mmjax.config_utils import ConfigError
from mmjax.models.fusion import MultimodalEncoder
from mmjax.models.image import ConvStem, PatchStem, normalize_images, posemb_sincos_2d
from mmjax.models.text import TextEmbedding, TextEncoder
from mmjax.models.transformer import MLP, Encoder, EncoderBlock
from mmjax.models.vqa import VQATransformer
from mmjax.projects.sort_of_clevr.salient import salient_patch_indices

B, N, Q, L, D, H = 2, 6, 3, 5, 16, 2
RNG = np.random.default_rng(0)


def _shapes(module, *args, **kwargs):
    """Output shapes of module.init_with_output, traced without compiling (fast)."""
    out, _ = jax.eval_shape(lambda: module.init_with_output(jax.random.key(0), *args, **kwargs))
    return jax.tree.map(lambda a: a.shape, out)


def _text_mask():
    lengths = np.array([[5, 2, 0], [1, 3, 4]])  # includes an all-padding question
    return jnp.asarray(np.arange(L) < lengths[..., None])


def _tokens():
    return jnp.asarray(RNG.normal(size=(B, Q, L, D)), jnp.float32)


def _image_tokens():
    return jnp.asarray(RNG.normal(size=(B, N, D)), jnp.float32)


def test_mlp_block_encoder_shapes():
    x = _tokens()
    assert _shapes(MLP(mlp_dim=32), x) == x.shape
    assert _shapes(MLP(mlp_dim=32, out_dim=7), x) == (B, Q, L, 7)
    block = EncoderBlock(num_heads=H, mlp_dim=32)
    assert _shapes(block, x, return_weights=True) == (x.shape, (B, Q, H, L, L))
    y, inter = _shapes(Encoder(depth=2, num_heads=H, mlp_dim=32), x, return_attention=True)
    assert y == x.shape
    assert inter == {"attention": {"block_0": (B, Q, H, L, L), "block_1": (B, Q, H, L, L)}}


def test_image_stems():
    images = jnp.asarray(RNG.integers(0, 256, size=(B, 23, 21, 3)), jnp.uint8)
    np.testing.assert_allclose(
        normalize_images(images), normalize_images(images.astype(jnp.float32) / 255), atol=1e-6
    )
    assert (
        float(normalize_images(images).min()) >= -1 and float(normalize_images(images).max()) <= 1
    )
    stem = PatchStem(patch_size=5, width=D)
    assert _shapes(stem, images) == (B, 4 * 4, D)
    params = jax.eval_shape(stem.init, jax.random.key(0), images)["params"]
    assert params["posemb"]["pos_embedding"].shape == (1, 16, D)
    sincos = PatchStem(patch_size=5, width=D, posemb="sincos2d")
    assert "posemb" not in jax.eval_shape(sincos.init, jax.random.key(0), images)["params"]
    assert _shapes(sincos, images) == (B, 16, D)
    assert _shapes(ConvStem(width=D, channels=(8, 16)), images) == (B, 6 * 6, D)  # ->12x11->6x6
    pe = posemb_sincos_2d(3, 4, 8)
    assert pe.shape == (1, 12, 8) and len(np.unique(pe.round(6), axis=1)[0]) == 12


def test_patch_stem_keeps_the_tokens_of_the_object_patches():
    # White 20x20 images (4x4 patches of 5) with coloured squares on known patches.
    images = np.full((2, 20, 20, 3), 255, np.uint8)
    images[0, 0:5, 5:10] = (255, 0, 0)  # patch 1
    images[0, 12:14, 17:19] = (0, 0, 255)  # two pixels in patch 2 * 4 + 3 = 11
    images[1, 15:20, 0:10] = (0, 128, 0)  # patches 12 and 13
    images[1, 7, 7] = (128, 128, 128)  # one pixel in patch 5
    kept = np.asarray(salient_patch_indices(normalize_images(images), 5, 3))
    assert kept[0, 1:].tolist() == [1, 11] and kept[1].tolist() == [5, 12, 13]
    full = PatchStem(patch_size=5, width=D, posemb="sincos2d")
    some = PatchStem(
        patch_size=5, width=D, posemb="sincos2d", keep_tokens=3, token_selector="salient_patches"
    )
    params = full.init(jax.random.key(0), images)
    tokens = np.asarray(full.apply(params, images))
    # The same parameters; each kept token is the full stem's token of that patch.
    np.testing.assert_allclose(
        some.apply(params, images), np.take_along_axis(tokens, kept[..., None], 1), atol=1e-6
    )
    with pytest.raises(ValueError, match="keep_tokens=17 must be in 1..16"):
        PatchStem(patch_size=5, width=D, keep_tokens=17, token_selector="salient_patches").init(
            jax.random.key(0), images
        )
    # Keeping tokens needs a (registered) selector.
    with pytest.raises(ValueError, match="keep_tokens=3 needs a token_selector, one of .*'salient"):
        PatchStem(patch_size=5, width=D, keep_tokens=3).init(jax.random.key(0), images)


class _ConvPatchStem(nn.Module):
    """PatchStem as a plain nn.Conv over every patch, then the kept ones: the reference."""

    kernel_size: int
    keep_tokens: int

    @nn.compact
    def __call__(self, images):
        x = normalize_images(images)
        pad = (self.kernel_size - 5) // 2
        x = nn.Conv(D, (self.kernel_size,) * 2, strides=5, padding=[(pad, pad)] * 2,
                    name="embedding")(x)  # fmt: skip
        x = nn.LayerNorm(name="embedding_norm")(x).reshape(x.shape[0], -1, D)
        pe = self.param("pos_embedding", nn.initializers.normal(D**-0.5), (1, x.shape[1], D))
        kept = salient_patch_indices(normalize_images(images), 5, self.keep_tokens)
        return jnp.take_along_axis(x + pe, kept[..., None], axis=1)


def test_patch_stem_embeds_only_the_kept_windows_as_a_conv_over_all_patches_would():
    images = np.asarray(jax.random.randint(jax.random.key(1), (3, 20, 20, 3), 0, 256), np.uint8)
    reference = _ConvPatchStem(kernel_size=11, keep_tokens=5)
    stem = PatchStem(
        patch_size=5,
        width=D,
        posemb="learn",
        kernel_size=11,
        keep_tokens=5,
        token_selector="salient_patches",
    )
    ref_params = reference.init(jax.random.key(0), images)["params"]
    params = stem.init(jax.random.key(0), images)["params"]
    # The same parameter tree and initial values as the conv's (old checkpoints still load).
    np.testing.assert_array_equal(params["embedding"]["kernel"], ref_params["embedding"]["kernel"])
    assert params["embedding"]["bias"].shape == (D,)
    params = dict(params)
    params["posemb"] = {"pos_embedding": ref_params["pos_embedding"]}
    params["embedding"] = {
        "kernel": ref_params["embedding"]["kernel"],
        "bias": jax.random.normal(jax.random.key(2), (D,)),
    }
    ref_params = dict(ref_params, embedding=params["embedding"])
    np.testing.assert_allclose(
        stem.apply({"params": params}, images),
        reference.apply({"params": ref_params}, images),
        atol=2e-5,
    )


def test_a_wide_patch_kernel_sees_the_neighbouring_patches_and_no_further():
    images = np.full((1, 20, 20, 3), 255, np.uint8)
    dotted = images.copy()
    dotted[0, 0, 9] = (255, 0, 0)  # in patch (0, 1), 1 pixel from patch (0, 2)
    stem = PatchStem(patch_size=5, width=D, posemb="sincos2d", kernel_size=11)
    params = stem.init(jax.random.key(0), images)
    changed = np.abs(np.asarray(stem.apply(params, dotted) - stem.apply(params, images)))
    changed = changed.max(-1).reshape(4, 4) > 1e-6
    # An 11x11 window reaches 3 pixels into each neighbouring patch.
    assert changed[0].tolist() == [False, True, True, False] and not changed[1:].any()
    with pytest.raises(ValueError, match="kernel_size=8 must be patch_size=5 plus an even"):
        PatchStem(patch_size=5, width=D, kernel_size=8).init(jax.random.key(0), images)


def test_text_embedding_and_encoder():
    tokens = jnp.asarray([[5, 3, 9, 0, 0], [7, 0, 0, 0, 0]], jnp.int32)
    assert _shapes(TextEmbedding(vocab_size=12, width=D, max_len=8), tokens) == (2, 5, D)
    enc = TextEncoder(vocab_size=12, width=D, max_len=8, depth=1, num_heads=H, mlp_dim=32)
    assert _shapes(enc, tokens, return_attention=True) == (
        (2, 5, D),
        {"attention": {"block_0": (2, H, 5, 5)}},
    )
    # Padding keys get no attention, so extra padding leaves the valid outputs unchanged.
    params = jax.jit(enc.init)(jax.random.key(0), tokens)
    apply = jax.jit(enc.apply)
    y, _ = apply(params, tokens)
    longer, _ = apply(params, jnp.pad(tokens, ((0, 0), (0, 3))))
    np.testing.assert_allclose(longer[0, :3], y[0, :3], atol=1e-5)
    np.testing.assert_allclose(longer[1, :1], y[1, :1], atol=1e-5)


@pytest.fixture(scope="module")
def fusion_params():
    """MultimodalEncoder(depth=2) parameters: an Encoder(depth=2) tree plus type embeddings."""
    encoder = Encoder(depth=2, num_heads=H, mlp_dim=32)
    params = jax.jit(encoder.init)(jax.random.key(0), _tokens())["params"]
    type_embedding = jnp.asarray(RNG.normal(size=(2, D)), jnp.float32)
    return {"params": {**params, "type_embedding": type_embedding}}


@jax.jit
def naive_fusion(params, image, text, text_mask, image_sees_text):
    """Per question: concatenate [image; text] and run the plain Encoder with an explicit mask.

    Returns ([B, Q, N, D], [B, Q, L, D], per-layer attention [B, Q, H, N + L, N + L]).
    """
    type_embedding = params["type_embedding"]
    x = jnp.concatenate(
        [
            jnp.broadcast_to(image[:, None] + type_embedding[0], (B, Q, N, D)),
            text + type_embedding[1],
        ],
        axis=2,
    )
    key_valid = jnp.concatenate([jnp.ones((B, Q, N), bool), text_mask], axis=2)
    mask = jnp.broadcast_to(key_valid[:, :, None, :], (B, Q, N + L, N + L))
    # Without image_sees_text, image rows (queries) do not attend to text keys.
    is_text_key = jnp.arange(N + L) >= N
    is_image_query = (jnp.arange(N + L) < N)[:, None]
    mask = mask & (image_sees_text | ~(is_image_query & is_text_key))
    encoder_params = {k: v for k, v in params.items() if k != "type_embedding"}
    encoder = Encoder(depth=2, num_heads=H, mlp_dim=32)
    y, inter = encoder.apply({"params": encoder_params}, x, mask[:, :, None], return_attention=True)
    return y[:, :, :N], y[:, :, N:], inter["attention"]


@pytest.mark.parametrize("share_image", [True, False])
def test_multimodal_encoder_matches_naive_concatenation(share_image, fusion_params):
    image, text, text_mask = _image_tokens(), _tokens(), _text_mask()
    fusion = MultimodalEncoder(depth=2, num_heads=H, mlp_dim=32, share_image=share_image)
    apply = jax.jit(fusion.apply, static_argnames="return_attention")
    image_out, text_out, inter = apply(fusion_params, image, text, text_mask, return_attention=True)
    want_image, want_text, want_attention = naive_fusion(
        fusion_params["params"], image, text, text_mask, not share_image
    )
    assert text_out.shape == (B, Q, L, D)
    np.testing.assert_allclose(text_out, want_text, atol=1e-5)
    text_attention = inter["text_attention"]["block_1"]
    assert text_attention.shape == (B, Q, H, L, N + L)
    np.testing.assert_allclose(text_attention, want_attention["block_1"][..., N:, :], atol=1e-6)
    if share_image:
        assert image_out.shape == (B, N, D)
        np.testing.assert_allclose(image_out[:, None].repeat(Q, 1), want_image, atol=1e-5)
        image_attention = inter["image_attention"]["block_0"]
        assert image_attention.shape == (B, H, N, N)
        np.testing.assert_allclose(
            image_attention, want_attention["block_0"][:, 0, :, :N, :N], atol=1e-6
        )
    else:
        assert image_out.shape == (B, Q, N, D)
        np.testing.assert_allclose(image_out, want_image, atol=1e-5)
        assert inter["image_attention"]["block_0"].shape == (B, Q, H, N, N + L)


def test_dropout_needs_train_and_rng(fusion_params):
    image, text, text_mask = _image_tokens(), _tokens(), _text_mask()
    fusion = MultimodalEncoder(
        depth=1, num_heads=H, mlp_dim=32, dropout_rate=0.3, attention_dropout_rate=0.3
    )
    params = {"params": {k: v for k, v in fusion_params["params"].items() if k != "block_1"}}
    with pytest.raises(Exception, match="dropout"):
        fusion.apply(params, image, text, text_mask, train=True)

    @jax.jit
    def run(params, seed):
        # "rbg" keys: same semantics here, and they compile ~4x faster than threefry on CPU.
        rngs = {"dropout": jax.random.key(seed, impl="rbg")}
        eval_out = fusion.apply(params, image, text, text_mask, rngs=rngs)[1]
        return eval_out, fusion.apply(params, image, text, text_mask, train=True, rngs=rngs)[1]

    eval_1, train_1 = run(params, 1)
    eval_2, train_2 = run(params, 2)
    np.testing.assert_array_equal(eval_1, eval_2)
    np.testing.assert_array_equal(train_1, run(params, 1)[1])
    assert not np.allclose(train_1, eval_1)
    assert not np.allclose(train_1, train_2)


def _vqa_batch(batch=2, q=3, size=20, seed=0):
    rng = np.random.default_rng(seed)
    images = jnp.asarray(rng.integers(0, 256, size=(batch, size, size, 3)), jnp.uint8)
    questions = rng.integers(1, 20, size=(batch, q, 6))
    questions[..., 4:] = 0
    questions[0, 1, 2:] = 0
    return images, jnp.asarray(questions, jnp.int32)


TINY = dict(vocab_size=20, max_question_len=8, width=32, depth=1, num_heads=2, mlp_dim=64)


def test_vqa_transformer_logits():
    images, questions = _vqa_batch()
    model = VQATransformer(patch_size=5, **TINY)
    params = jax.jit(model.init)(jax.random.key(0), images, questions)
    logits, inter = jax.jit(model.apply, static_argnames="return_attention")(
        params, images, questions, return_attention=True
    )
    assert logits.shape == (2, 3, 10) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()
    assert inter["pre_logits"].shape == (2, 3, 32)
    assert inter["text_attention"]["block_0"].shape == (2, 3, 2, 6, 16 + 6)


@pytest.mark.parametrize(
    "overrides",
    [dict(stem="conv", conv_channels=(8, 16)), dict(pool="mean", share_image=False)],
)
def test_vqa_transformer_variants_shapes(overrides):
    images, questions = _vqa_batch()
    model = VQATransformer(patch_size=5, **TINY, **overrides)
    logits, inter = _shapes(model, images, questions, return_attention=True)
    assert logits == (2, 3, 10)
    n = 16 if model.stem == "patch" else 25
    assert inter["text_attention"]["block_0"] == (2, 3, 2, 6, n + 6)


@pytest.mark.parametrize("condition_image", ["none", "shift", "gate"])
def test_pooled_question_fusion(condition_image):
    images, questions = _vqa_batch()
    model = VQATransformer(
        patch_size=5,
        question_fusion="pooled",
        question_depth=1,
        condition_image=condition_image,
        **TINY,
    )
    params = jax.jit(model.init)(jax.random.key(0), images, questions)
    apply = jax.jit(model.apply, static_argnames="return_attention")  # eager flax is slow
    logits, inter = apply(params, images, questions, return_attention=True)
    assert logits.shape == (2, 3, 10)
    # One fused token per question: it attends to the 16 image tokens and to itself.
    assert inter["text_attention"]["block_0"].shape[-2:] == (1, 16 + 1)
    # Each question's answer depends on that question only.
    other = questions.at[:, 1].set(questions[:, 0])
    changed, _ = apply(params, images, other)
    np.testing.assert_allclose(changed[:, 0], logits[:, 0], atol=1e-5)


def test_tiny_vqa_transformer_overfits_fixed_batch():
    images, questions = _vqa_batch(batch=4, q=3, seed=1)
    answers = jnp.asarray(np.random.default_rng(2).integers(0, 10, size=(4, 3)))
    model = VQATransformer(patch_size=5, dropout_rate=0.0, **TINY)
    params = jax.jit(model.init)(jax.random.key(0), images, questions)
    optimizer = optax.adam(3e-3)
    opt_state = optimizer.init(params)

    def loss_fn(params):
        logits, _ = model.apply(params, images, questions, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, answers).mean()

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(50):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 0.1 * losses[0], losses


def test_append_coordinates_marks_columns_and_rows():
    from mmjax.models.image import append_coordinates

    x = jnp.zeros((2, 3, 5, 3))
    out = append_coordinates(x)
    assert out.shape == (2, 3, 5, 5)
    np.testing.assert_allclose(out[0, 0, :, 3], np.linspace(-1, 1, 5))  # column, left to right
    np.testing.assert_allclose(out[1, :, 4, 4], np.linspace(-1, 1, 3))  # row, top to bottom


def test_lookup_distance_bias_matches_a_direct_computation():
    from mmjax.projects.sort_of_clevr.pointer import LookupDistanceBias, pointer_features

    n, h = 7, 3
    x = RNG.normal(size=(B, Q, L, D)).astype(np.float32)
    weights = np.exp(5 * RNG.normal(size=(B, Q, h, L, n))).astype(np.float32)
    weights /= weights.sum(-1, keepdims=True)  # spread enough that some likeness is clipped
    positions = RNG.random(size=(B, n, 2)).astype(np.float32)
    features = pointer_features(weights, positions)
    module = LookupDistanceBias(num_heads=h)
    params = module.init(jax.random.key(0), x, features)["params"]
    assert not np.asarray(module.apply({"params": params}, x, features)).any()
    kernel = RNG.normal(size=(D, 2, h, h)).astype(np.float32)
    params = {**params, "coefficients": {"kernel": kernel}}
    bias = np.asarray(module.apply({"params": params}, x, features))
    assert bias.shape == (B, h, Q, L, n)

    normed = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    coefficients = np.einsum("bqld,dchk->bqlchk", normed, kernel)
    for b, q, l_, head in np.ndindex(B, Q, L, h):
        expected = np.zeros(n)
        for prev in range(h):
            w = weights[b, q, prev, l_]
            pointer = w @ positions[b]
            # (The module adds 1e-6 under the root, for a finite gradient at distance 0.)
            distance = np.sqrt(np.square(positions[b] - pointer).sum(-1) + 1e-6)
            slope, exclude = coefficients[b, q, l_, :, head, prev]
            likeness = 1 + np.maximum(np.log(w / w.max()), -8) / 8
            expected += slope * distance + exclude * likeness
        np.testing.assert_allclose(bias[b, head, q, l_], expected, rtol=1e-4, atol=1e-4)


def test_vqa_transformer_lookup_bias_starts_as_the_plain_model():
    from mmjax.models.image import patch_positions

    images, questions = _vqa_batch()
    kw = dict(
        patch_size=5,
        keep_tokens=6,
        token_selector="salient_patches",
        pool="mean",
        question_fusion="pooled",
        **TINY,
    )
    plain = VQATransformer(**dict(kw, depth=2))
    biased = VQATransformer(**dict(kw, depth=2), lookup_bias="pointer")
    params = jax.jit(biased.init)(jax.random.key(0), images, questions)["params"]
    assert set(params["fusion"]["block_1"]["lookup_bias"]) == {"norm", "coefficients"}

    def without_pointer(tree):
        return {
            k: without_pointer(v) if isinstance(v, dict) else v
            for k, v in tree.items()
            if k not in ("pointer", "lookup_bias")
        }

    plain_params = without_pointer(params)
    np.testing.assert_allclose(
        jax.jit(biased.apply)({"params": params}, images, questions)[0],
        jax.jit(plain.apply)({"params": plain_params}, images, questions)[0],
        atol=1e-6,
    )
    # The positions are those of the kept patches, as the stem orders its tokens.
    kept = np.asarray(salient_patch_indices(normalize_images(images), 5, 6))
    rows, cols = kept // 4, kept % 4
    expected = np.stack([(rows + 0.5) / 4, (cols + 0.5) / 4], -1)
    np.testing.assert_allclose(
        patch_positions(images, 5, 6, "salient_patches"), expected, atol=1e-6
    )
    with pytest.raises(ValueError, match="needs stem='patch'"):
        VQATransformer(**dict(kw, stem="conv", conv_channels=(8,)), lookup_bias="pointer").init(
            jax.random.key(0), images, questions
        )
    with pytest.raises(
        ConfigError, match=r"config.model.lookup_bias='far' is not one of .*'pointer'"
    ):
        VQATransformer(**kw, lookup_bias="far").init(jax.random.key(0), images, questions)


@pytest.mark.parametrize("vocab", [6, 12])  # looks per vocabulary entry / per question token
def test_word_pointer_matches_a_per_word_computation(vocab):
    from mmjax.projects.sort_of_clevr.pointer import WordPointer

    h, dh, n = 2, 4, 5
    questions = np.array([[[3, 5, 4, 0], [4, 5, 3, 1]], [[2, 0, 0, 0], [0, 0, 0, 0]]])
    image = RNG.normal(size=(2, n, D)).astype(np.float32)
    module = WordPointer(vocab, num_heads=h, width=D, head_dim=dh)
    params = module.init(jax.random.key(0), questions, image)["params"]
    params = jax.tree.map(lambda x: RNG.normal(size=x.shape).astype(np.float32), params)
    got = np.asarray(module.apply({"params": params}, questions, image))
    assert got.shape == (2, 2, h, 1, n)

    def norm(x, p):
        x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
        return x * p["scale"] + p["bias"]

    def softmax(x):
        e = np.exp(x - x.max())
        return e / e.sum()

    image_normed = norm(image, params["image_norm"])
    for b, q in np.ndindex(2, 2):
        ids = questions[b, q]
        words = norm(params["word_embedding"]["embedding"][ids], params["word_norm"])  # [L, D]
        score = words @ params["word_score"]["kernel"] + params["word_score"]["bias"]  # [L, H]
        for head in range(h):
            # Padding never chosen; an all-padding question chooses its slots uniformly.
            valid = ids != 0 if (ids != 0).any() else np.ones_like(ids, bool)
            choice = np.where(valid, softmax(np.where(valid, score[:, head], -np.inf)), 0)
            expected = np.zeros(n)
            for word, weight in zip(words, choice):
                query = word @ params["query"]["kernel"][:, head] + params["query"]["bias"][head]
                key = (
                    image_normed[b] @ params["key"]["kernel"][:, head] + params["key"]["bias"][head]
                )
                expected += weight * softmax(key @ query / np.sqrt(dh))
            np.testing.assert_allclose(got[b, q, head, 0], expected, rtol=1e-4, atol=1e-5)
