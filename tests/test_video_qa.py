"""Video QA on bouncing shapes: the clip stems, multi-clip evaluation, a tiny run whose loss
falls, and predict answering a question about a clip.

The slow checks (8 fake devices, a kill and a resume, the command line end to end) are in
tests/test_video_qa_runs.py.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.config_loader import load_config
from mmjax.experiment import Experiment
from mmjax.models.frame_stems import FrameMeanStem, SingleFrameStem
from mmjax.models.image import PatchStem, posemb_sincos_2d
from mmjax.models.kept_tubelets import KeptTubeletStem, tubelet_frames
from mmjax.predict.errors import InputError
from mmjax.predict.predictor import Predictor
from mmjax.predict.run import LoadedRun
from mmjax.projects.bouncing_shapes import clips
from mmjax.projects.bouncing_shapes.dataset import common_record
from mmjax.tasks.clip_windows import mean_window_logits, window_starts
from mmjax.train.optimizer import learning_rate_schedule, make_optimizer
from mmjax.train.steps import init_train_state, make_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = f"{ROOT}/configs/video_qa.py:size=tiny"


def _task(spec: str = TINY, *overrides):
    """The tiny config's task, prepared (the dataset fixes its vocabularies: no data read)."""
    return Experiment.assemble(load_config(spec, list(overrides)), prepare_data=False).task


def _batch(task, size: int, num_frames: int = 8, seed: int = 0) -> dict:
    """`size` generated clips of `num_frames` frames, preprocessed and stacked."""
    generated = clips.generate_split(seed, size, "train", num_frames=num_frames)
    examples = [task.preprocess(common_record(c, i)) for i, c in enumerate(generated)]
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def _random_clip(shape=(2, 5, 16, 16, 3), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ---------------------------------------------------------------- stems


def test_tubelet_frames_stack_each_frame_with_its_clamped_neighbours():
    video = np.arange(4)[None, :, None, None, None] * np.ones((1, 4, 2, 2, 1))
    stacked = np.asarray(tubelet_frames(jnp.asarray(video), 3))  # [1, 4, 2, 2, 3]
    assert stacked.shape == (1, 4, 2, 2, 3)
    np.testing.assert_array_equal(stacked[0, :, 0, 0], [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]])
    with pytest.raises(ValueError, match="must be odd"):
        tubelet_frames(jnp.asarray(video), 2)


def test_kept_tubelet_tokens_equal_a_direct_computation():
    """Every token (all patches kept): its 8x8 window over frames t-1..t+1, times the kernel,
    layer-normalised, plus the sin-cos position of its cell and the embedding of its frame."""
    video = _random_clip()
    stem = KeptTubeletStem(4, 8, kernel_size=8, tubelet=3)
    params = stem.init(jax.random.key(0), video)["params"]
    tokens = np.asarray(stem.apply({"params": params}, video))
    assert tokens.shape == (2, 5 * 16, 8)

    x = (video.astype(np.float64) / 255 - 0.5) / 0.5
    x = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2), (0, 0)))
    kernel = np.asarray(params["embedding"]["kernel"], np.float64)  # [8, 8, 9, 8]
    norm = params["embedding_norm"]
    space = posemb_sincos_2d(4, 4, 8)[0]
    time = np.asarray(params["temporal_embedding"])
    for b, t, cell in [(0, 0, 0), (1, 2, 5), (0, 4, 15), (1, 3, 10)]:
        row, col = divmod(cell, 4)
        frames = [min(max(f, 0), 4) for f in (t - 1, t, t + 1)]
        window = x[b, frames, row * 4 : row * 4 + 8, col * 4 : col * 4 + 8]  # [3, 8, 8, 3]
        window = np.moveaxis(window, 0, 2).reshape(8, 8, 9)
        y = np.einsum("hwc,hwcf->f", window, kernel) + params["embedding"]["bias"]
        y = (y - y.mean()) / np.sqrt(y.var() + 1e-6) * norm["scale"] + norm["bias"]
        want = y + space[cell] + time[t]
        np.testing.assert_allclose(tokens[b, t * 16 + cell], want, rtol=1e-4, atol=1e-4)


def test_kept_tubelets_keep_the_selected_patches_of_each_frame():
    import mmjax.projects.sort_of_clevr  # noqa: F401  registers "salient_patches"

    video = np.full((1, 3, 16, 16, 3), 255, np.uint8)
    for t, (row, col) in enumerate([(0, 0), (1, 2), (3, 3)]):  # one red patch a frame
        video[0, t, row * 4 : row * 4 + 4, col * 4 : col * 4 + 4] = (255, 0, 0)
    stem = KeptTubeletStem(4, 8, keep_tokens=1, tubelet=1, token_selector="salient_patches")
    params = stem.init(jax.random.key(0), video)["params"]
    every = KeptTubeletStem(4, 8, tubelet=1)
    all_tokens = np.asarray(every.apply({"params": params}, video)).reshape(3, 16, 8)
    kept = np.asarray(stem.apply({"params": params}, video))[0]
    np.testing.assert_allclose(kept, all_tokens[[0, 1, 2], [0, 6, 15]], rtol=1e-5, atol=1e-6)


def test_single_frame_and_frame_mean_stems_are_the_image_stem_on_frames():
    video = _random_clip()
    image = PatchStem(4, 8, kernel_size=8, posemb="sincos2d")
    params = image.init(jax.random.key(0), video[:, 0])
    middle = SingleFrameStem(4, 8, kernel_size=8, posemb="sincos2d")
    np.testing.assert_allclose(
        middle.apply(params, video), image.apply(params, video[:, 2]), rtol=1e-6
    )
    first = SingleFrameStem(4, 8, kernel_size=8, posemb="sincos2d", frame=0)
    np.testing.assert_allclose(first.apply(params, video), image.apply(params, video[:, 0]))
    mean = FrameMeanStem(4, 8, kernel_size=8, posemb="sincos2d")
    want = np.mean([image.apply(params, video[:, t]) for t in range(5)], axis=0)
    np.testing.assert_allclose(mean.apply(params, video), want, rtol=1e-5, atol=1e-6)


def test_a_video_option_the_stem_does_not_read_is_named():
    config = load_config(TINY, [])
    config.model.video = {"tubelets": 3}
    task = Experiment.assemble(config, prepare_data=False).task
    with pytest.raises(ValueError, match=r"no option \['tubelets'\] for stem='kept_tubelets'"):
        jax.eval_shape(task.init_params, jax.random.key(0), _batch(task, 1))


# ---------------------------------------------------------------- multi-clip evaluation


def test_window_starts_cover_the_clip_evenly():
    assert window_starts(16, 8, 8) == [0, 8]
    assert window_starts(16, 8, 4) == [0, 4, 8]
    assert window_starts(12, 8, 8) == [0, 4]  # two windows, the last ending at the clip's end
    assert window_starts(20, 8, 5) == [0, 4, 8, 12]
    assert window_starts(8, 8, 8) == [0]
    assert window_starts(6, 8, 8) == [0]  # shorter than the window: whole
    assert window_starts(16, 0, 0) == [0]


def test_mean_window_logits_of_a_clip_no_longer_than_the_window_is_the_clip():
    video = jnp.ones((1, 8, 4, 4, 3))
    np.testing.assert_array_equal(mean_window_logits(lambda v: v.sum((2, 3, 4)), video, 8, 8), 48)


def test_a_16_frame_clip_through_an_8_frame_model_scores_the_mean_of_its_windows_logits():
    task = _task(f"{TINY},window=8")
    batch = _batch(task, 2, num_frames=16)
    params = task.init_params(jax.random.key(0), {**batch, "image": batch["image"][:, :8]})
    got = jax.device_get(jax.jit(task.predict)(params, batch))

    def logits(video):
        out, _ = task.model.apply({"params": params}, video, batch["question"])
        return np.asarray(out, np.float64)

    mean = (logits(batch["image"][:, :8]) + logits(batch["image"][:, 8:])) / 2
    probabilities = np.exp(mean - mean.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    np.testing.assert_array_equal(got["answer"], mean.argmax(-1))
    np.testing.assert_allclose(got["probability"], probabilities.max(-1), rtol=1e-5)
    # Not what one window alone gives (the test would pass with windows ignored otherwise).
    assert not np.allclose(mean, logits(batch["image"][:, :8]), atol=1e-3)


# ---------------------------------------------------------------- training and predict


@pytest.mark.parametrize(
    "model",
    [
        "video",
        # The baselines' stems are tested against the image stem above; their runs: slow.
        pytest.param("single_frame", marks=pytest.mark.slow),  # about 10 s
        pytest.param("frame_mean", marks=pytest.mark.slow),  # about 10 s
    ],
)
def test_tiny_video_qa_loss_falls(model):
    spec = f"{TINY},model={model}"
    task = _task(spec)
    batch = _batch(task, 4)
    config = load_config(spec, [])
    optimizer = make_optimizer(config.optim, 100)
    schedule = learning_rate_schedule(config.optim, 100)
    init = jax.jit(functools.partial(init_train_state, task, optimizer))
    state = init(jax.random.key_data(jax.random.key(0)), batch)
    step = jax.jit(make_train_step(task, optimizer, schedule))
    state = state.replace(step=jnp.asarray(50, jnp.int32))  # past warmup: real updates
    losses = []
    for _ in range(30):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.7 * losses[0], losses


def _predictor(spec: str = TINY) -> Predictor:
    """A Predictor on the tiny model with its initial parameters (no training needed)."""
    task = _task(spec)
    config = load_config(spec, [])
    params = task.init_params(jax.random.key(0), _batch(task, 1))
    return Predictor(LoadedRun("unused", config, task, params, 0))


def test_predict_answers_a_question_about_a_clip_as_the_task_predicts(tmp_path):
    predictor = _predictor()
    clip = next(clips.generate_split(0, 1, "test"))
    path = tmp_path / "clip.npy"
    np.save(path, clip["video"])
    question = "which way does the red object move halfway through the clip?"
    answer = predictor.answer(str(path), question)
    assert answer.text in predictor.task.answers.answers
    record = {"video": clip["video"], "questions": {"text": [question], "answer": ["left"]}}
    predicted = predictor.predict(record)
    assert answer.index == int(predicted["answer"][0])
    assert answer.probability == pytest.approx(float(predicted["probability"][0]), rel=1e-5)
    with pytest.raises(InputError, match="has 7 frames; this model takes clips of 8 frames"):
        predictor.answer(clip["video"][:7], question)


@pytest.mark.parametrize(
    "model", ["single_frame", pytest.param("frame_mean", marks=pytest.mark.slow)]
)
def test_predict_takes_clips_for_the_frame_baselines(model):
    predictor = _predictor(f"{TINY},model={model}")
    clip = next(clips.generate_split(0, 1, "test"))
    answer = predictor.answer(clip["video"], "which object moves fastest?")
    assert answer.text in predictor.task.answers.answers
