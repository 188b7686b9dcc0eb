"""ViViT video encoders (`mmjax.models.video`) against NumPy and image-model references."""

import jax
import ml_collections
import numpy as np
import pytest

from mmjax.models.captioner import Captioner
from mmjax.models.dual_encoder import DualEncoder
from mmjax.models.image import PatchStem
from mmjax.models.stems import image_stem
from mmjax.models.video import TubeletEmbedding, ViViT, inflate_kernel
from mmjax.models.vqa import VQATransformer
from mmjax.weights import init_from, tree

RNG = np.random.default_rng(0)


def _clip(batch=2, frames=4, size=12):
    return RNG.integers(0, 256, (batch, frames, size, size, 3), dtype=np.uint8)


def test_tubelet_embedding_equals_a_numpy_loop_over_tubelets():
    video = RNG.normal(size=(2, 4, 10, 9, 3)).astype(np.float32)  # 10x9: a row, a column cut
    module = TubeletEmbedding(features=5, frames=2, patch_size=4)
    params = module.init(jax.random.key(0), video)["params"]
    params["bias"] = RNG.normal(size=5).astype(np.float32)
    out = np.asarray(module.apply({"params": params}, video))
    kernel, bias = np.asarray(params["kernel"]), params["bias"]
    expected = np.zeros((2, 2, 2, 2, 5), np.float32)
    for b in range(2):
        for i in range(2):
            for r in range(2):
                for c in range(2):
                    window = video[b, 2 * i : 2 * i + 2, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4]
                    expected[b, i, r, c] = np.einsum("thwc,thwcd->d", window, kernel) + bias
    assert out.shape == (2, 2, 2, 2, 5)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_tubelet_embedding_refuses_a_clip_that_is_not_whole_tubelets():
    module = TubeletEmbedding(features=4, frames=3, patch_size=4)
    with pytest.raises(ValueError, match="5 frames is not a whole number of 3-frame tubelets"):
        module.init(jax.random.key(0), np.zeros((1, 5, 8, 8, 3), np.float32))


def _image_and_video_stems(frames, rule, clip_frames):
    """An image patch stem's params, and a joint ViViT stem's started from them by `rule`."""
    image_stem_ = PatchStem(patch_size=4, width=8)
    image_params = image_stem_.init(jax.random.key(1), np.zeros((1, 12, 12, 3), np.uint8))
    image_params = jax.tree.map(lambda a: a + RNG.normal(size=a.shape) * 0.1, image_params)
    video_stem = ViViT(8, patch_size=4, tubelet=frames)
    video_params = video_stem.init(
        jax.random.key(2), np.zeros((1, clip_frames, 12, 12, 3), np.uint8)
    )
    p = jax.tree.map(np.asarray, video_params["params"])
    p["embedding"]["kernel"] = inflate_kernel(
        np.asarray(image_params["params"]["embedding"]["kernel"]), frames, rule
    )
    p["embedding"]["bias"] = np.asarray(image_params["params"]["embedding"]["bias"])
    p["posemb"]["pos_embedding"] = np.asarray(image_params["params"]["posemb"]["pos_embedding"])
    return image_stem_, image_params, video_stem, {"params": p}


@pytest.mark.parametrize("rule", ["average", "central"])
def test_inflated_stem_embeds_identical_frames_as_the_image_stem(rule):
    image_stem_, image_params, video_stem, video_params = _image_and_video_stems(3, rule, 6)
    images = _clip(frames=1)[:, 0]
    video = np.repeat(images[:, None], 6, axis=1)  # 6 identical frames: 2 tubelets of 3
    expected = np.asarray(image_stem_.apply(image_params, images))  # [B, 9, 8]
    tokens = np.asarray(video_stem.apply(video_params, video)).reshape(2, 2, 9, 8)
    for step in range(2):
        np.testing.assert_allclose(tokens[:, step], expected, rtol=1e-5, atol=1e-5)


def test_central_frame_init_reads_the_central_frame_only():
    image_stem_, image_params, video_stem, video_params = _image_and_video_stems(3, "central", 3)
    images = _clip(frames=1)[:, 0]
    video = _clip(frames=3)  # other frames random: they must not count
    video[:, 1] = images
    expected = np.asarray(image_stem_.apply(image_params, images))
    np.testing.assert_allclose(
        np.asarray(video_stem.apply(video_params, video)), expected, rtol=1e-5, atol=1e-5
    )
    kernel = inflate_kernel(np.ones((2, 2, 3, 4), np.float32), 3, "central")
    np.testing.assert_array_equal(kernel[[0, 2]], 0.0)
    np.testing.assert_array_equal(kernel[1], 1.0)
    np.testing.assert_allclose(inflate_kernel(np.ones((2, 2, 3, 4)), 4).sum(0), 1.0)


@pytest.mark.parametrize(
    "options, tokens",
    [
        (dict(kind="joint", depth=1), 2 * 9),  # T' * H' * W'
        (dict(kind="joint"), 2 * 9),
        (dict(kind="factorised", spatial_depth=1, temporal_depth=1), 2),  # T' frame tokens
        (dict(kind="factorised", spatial_depth=1, temporal_depth=1, pool="cls"), 2),
    ],
)
def test_joint_and_factorised_shapes(options, tokens):
    model = ViViT(16, patch_size=4, tubelet=2, num_heads=2, **options)
    video = _clip(frames=4)
    params = jax.eval_shape(model.init, jax.random.key(0), video)
    out, pooled = jax.eval_shape(lambda p: model.apply(p, video, method=model.encode), params)
    assert out.shape == (2, tokens, 16) and pooled.shape == (2, 16)


def _perturbed_later_frames(model):
    """How much the first tubelet's token(s) move when only the last frames change."""
    video = _clip(frames=4)
    params = model.init(jax.random.key(0), video)
    changed = video.copy()
    changed[:, 2:] = 255 - changed[:, 2:]
    first = model.apply(params, video)
    after = model.apply(params, changed)
    if model.kind == "joint":
        first, after = first[:, :9], after[:, :9]  # the first tubelet's 3 x 3 tokens
    else:
        first, after = first[:, 0], after[:, 0]
    return float(np.abs(np.asarray(first) - np.asarray(after)).max())


def test_factorised_spatial_attention_stays_within_a_time_step():
    # Without temporal blocks a frame token sees only its own tubelet; with them, every one.
    alone = ViViT(16, patch_size=4, kind="factorised", spatial_depth=2, num_heads=2)
    assert _perturbed_later_frames(alone) == 0.0
    mixed = ViViT(
        16, patch_size=4, kind="factorised", spatial_depth=1, temporal_depth=1, num_heads=2
    )
    assert _perturbed_later_frames(mixed) > 1e-3


def test_joint_attention_mixes_time_steps():
    assert _perturbed_later_frames(ViViT(16, patch_size=4, depth=0)) == 0.0  # embedding only
    assert _perturbed_later_frames(ViViT(16, patch_size=4, depth=1, num_heads=2)) > 1e-3


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(kind="spacetime"), "Unknown ViViT kind 'spacetime'"),
        (dict(kind="joint", temporal_depth=1), "kind='factorised' options"),
        (dict(kind="factorised", depth=1), "takes spatial_depth and temporal_depth, not depth"),
        (dict(frames=2), r"model.video has no option \['frames'\]"),
    ],
)
def test_bad_video_options_name_the_problem(options, message):
    with pytest.raises(ValueError, match=message):
        stem = image_stem("vivit", 8, patch_size=4, video=options, num_heads=2)
        stem.init(jax.random.key(0), _clip(frames=2))


def _captioners(kind):
    kw = dict(vocab_size=20, max_len=6, width=16, num_heads=2, mlp_dim=32, patch_size=4)
    image = Captioner(stem="patch", encoder_depth=1, **kw)
    if kind == "joint":
        video = Captioner(stem="vivit", encoder_depth=1, video=dict(tubelet=2), **kw)
        rename = ()
    else:
        options = dict(kind="factorised", tubelet=2, spatial_depth=1)
        video = Captioner(stem="vivit", encoder_depth=0, video=options, **kw)
        rename = (("^image_encoder/", "stem/spatial/"),)
    return image, video, rename


@pytest.mark.parametrize("rule", ["average", "central"])
def test_init_from_an_image_captioner_encodes_a_still_clip_as_the_image(tmp_path, rule):
    """init_from inflates the patch kernel and reuses posemb and blocks: a joint encoder over
    T' copies of each image token gives, per time step, the image encoder's tokens."""
    image_model, video_model, _ = _captioners("joint")
    images = _clip(frames=1)[:, 0]
    video = np.repeat(images[:, None], 4, axis=1)
    tokens = np.zeros((2, 6), np.int32)
    image_params = image_model.init(jax.random.key(3), images, tokens[:, None])["params"]
    source = tmp_path / "image.npz"
    np.savez(source, **tree.as_numpy(tree.flatten(image_params)))
    video_params = video_model.init(jax.random.key(4), video, tokens[:, None])["params"]
    init = ml_collections.ConfigDict(
        dict(
            path=str(source),
            include="^(stem|image_encoder)/",
            exclude="temporal_embedding",
            step=0,
            inflate=rule,
        )
    )
    plan = init_from.make_plan(init, video_params)
    assert list(plan.inflated) == ["stem/embedding/kernel"]
    assert plan.record()["inflated"]["stem/embedding/kernel"][2] == rule
    loaded = tree.replace(video_params, plan.loaded)
    expected = image_model.apply({"params": image_params}, images, method=Captioner.encode)
    out = video_model.apply({"params": loaded}, video, method=Captioner.encode)
    out = np.asarray(out).reshape(2, 2, -1, 16)  # [B, T', H' W', D]
    for step in range(2):
        np.testing.assert_allclose(out[:, step], np.asarray(expected), rtol=2e-4, atol=2e-4)


def test_factorised_spatial_encoder_from_an_image_encoder_pools_its_tokens(tmp_path):
    image_model, video_model, rename = _captioners("factorised")
    images = _clip(frames=1)[:, 0]
    video = np.repeat(images[:, None], 4, axis=1)
    tokens = np.zeros((2, 6), np.int32)
    image_params = image_model.init(jax.random.key(3), images, tokens[:, None])["params"]
    source = tmp_path / "image.npz"
    np.savez(source, **tree.as_numpy(tree.flatten(image_params)))
    video_params = video_model.init(jax.random.key(4), video, tokens[:, None])["params"]
    init = ml_collections.ConfigDict(
        dict(
            path=str(source), include="^stem/", exclude="temporal", rename=rename, inflate="average"
        )
    )
    loaded = tree.replace(video_params, init_from.make_plan(init, video_params).loaded)
    image_tokens = image_model.apply({"params": image_params}, images, method=Captioner.encode)
    frame_tokens = video_model.apply({"params": loaded}, video, method=Captioner.encode)
    expected = np.asarray(image_tokens).mean(axis=1)  # pool="mean" of each frame's tokens
    for step in range(2):
        np.testing.assert_allclose(np.asarray(frame_tokens)[:, step], expected, atol=2e-4)


def test_every_model_takes_a_clip_through_the_vivit_stem():
    video, text = _clip(frames=4), np.ones((2, 3, 5), np.int32)
    options = dict(kind="factorised", tubelet=2, spatial_depth=1, temporal_depth=1)
    kw = dict(width=16, num_heads=2, mlp_dim=32, patch_size=4, stem="vivit", video=options)

    def output_shape(model, *inputs):
        params = jax.eval_shape(model.init, jax.random.key(0), *inputs)
        return jax.tree.map(lambda a: a.shape, jax.eval_shape(model.apply, params, *inputs)[0])

    vqa = VQATransformer(num_answers=7, vocab_size=10, max_question_len=5, depth=1, **kw)
    assert output_shape(vqa, video, text) == (2, 3, 7)
    assert output_shape(Captioner(vocab_size=10, max_len=5, **kw), video, text) == (2, 3, 5, 10)
    dual = DualEncoder(vocab_size=10, max_len=5, embed_dim=8, **kw)
    assert output_shape(dual, video, text[:, 0])["image"] == (2, 8)
