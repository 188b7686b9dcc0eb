"""Video captioning and retrieval: the motion check of captions and the tiny configs' runs."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mmjax.projects.bouncing_shapes.caption_motion import MotionCaptionEvaluator
from mmjax.projects.bouncing_shapes.dataset import word_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_motion_caption_evaluator_scores_each_objects_direction():
    tokenizer = word_tokenizer()
    texts = [
        # red named right (left; "right wall" is a wall), blue named wrong (down, not up)
        "the red circle moves left and bounces off the right wall; the blue square moves down.",
        "the blue square moves up; the red circle moves left.",  # both right
        "the red circle bounces off the left wall.",  # red named without a direction
        "the red circle moves up.",  # a padding row: must not count
    ]
    tokens = np.stack([tokenizer.encode(t, 32)[1:] for t in texts])  # predictions have no BOS
    batch = {
        "object_color": np.array([[0, 2]] * 4),  # red, blue
        "object_direction": np.array([[0, 2]] * 4),  # left, up
        "_mask": np.array([True, True, True, False]),
    }
    evaluator = MotionCaptionEvaluator(tokenizer)
    metrics = evaluator.evaluate([(batch, {"tokens": tokens})])
    assert metrics["motion_named"] == pytest.approx(5 / 6)
    assert metrics["motion_accuracy"] == pytest.approx(3 / 6)
    assert metrics["motion_all_correct"] == pytest.approx(1 / 3)


def _gif(path, frames: int, size: int = 64) -> str:
    clip = np.random.default_rng(0).integers(0, 2, (frames, size, size, 3), dtype=np.uint8) * 255
    images = [Image.fromarray(f) for f in clip]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    return str(path)


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow  # both runs: 116 s wall, 69 s CPU on the shared 2-core CPU at load 8-9
@pytest.mark.parametrize("config", ["video_caption", "video_retrieval"])
def test_tiny_video_runs_train_evaluate_and_predict_on_a_gif(tmp_path, config):
    spec = f"configs/{config}.py:size=tiny,num_train=16,num_validation=8,num_test=8"
    workdir = f"--workdir={tmp_path}/run"
    done = _run("mmjax.main", f"--config={spec},data_dir={tmp_path}/data", workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = open(tmp_path / "run" / "metrics.jsonl").read()
    key = "test_motion/motion_accuracy" if config == "video_caption" else "test/t2i_r1"
    assert key in metrics
    extra = ["--caption=the red circle moves left.", "--caption=the red circle moves up."]
    extra = extra if config == "video_retrieval" else []
    done = _run("mmjax.predict", workdir, f"--clip={_gif(tmp_path / 'ok.gif', 8)}", *extra)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(done.stdout.strip().splitlines()) == (2 if extra else 1)
    done = _run("mmjax.predict", workdir, f"--clip={_gif(tmp_path / 'short.gif', 6)}", *extra)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"mmjax: input error: '{tmp_path}/short.gif' has 6 frames; this model takes clips of "
        "8 frames"
    )


@pytest.mark.parametrize("kind", ["joint", "factorised"])
def test_video_caption_init_starts_the_video_encoder_from_an_image_captioner(tmp_path, kind):
    """configs/video_caption.py:init=... loads an image captioner's patch stem (inflated) and
    encoder blocks into the ViViT captioner, and nothing else."""
    import jax

    from mmjax.config_loader import load_config
    from mmjax.experiment import build_task
    from mmjax.models.captioner import Captioner
    from mmjax.weights import init_from, tree

    source = tmp_path / "image_captioner.npz"
    spec = f"configs/video_caption.py:size=tiny,kind={kind},init={source},init_inflate=central"
    config = load_config(os.path.join(ROOT, spec), [])
    task = build_task(config)
    task.prepare(None)
    model = config.model
    image_model = Captioner(
        vocab_size=task.model.vocab_size,
        max_len=task.model.max_len,
        width=model.width,
        encoder_depth=1,
        decoder_depth=model.decoder_depth,
        num_heads=model.num_heads,
        mlp_dim=model.mlp_dim,
        stem="patch",
        patch_size=model.patch_size,
    )
    captions = np.zeros((1, 1, task.model.max_len), np.int32)
    images = np.zeros((1, 64, 64, 3), np.uint8)
    image_params = image_model.init(jax.random.key(0), images, captions)["params"]
    np.savez(source, **tree.as_numpy(tree.flatten(image_params)))
    batch = {"image": np.zeros((1, 8, 64, 64, 3), np.uint8), "captions": captions}
    params = jax.eval_shape(task.init_params, jax.random.key(1), batch)
    plan = init_from.make_plan(config.init_from, params)
    assert plan.inflated["stem/embedding/kernel"] == (
        (16, 16, 3, 32),
        (2, 16, 16, 3, 32),
        "central",
    )
    spatial = "image_encoder" if kind == "joint" else "stem/spatial"
    assert f"{spatial}/block_0/mlp/fc1/kernel" in plan.loaded
    assert "stem/posemb/pos_embedding" in plan.loaded
    assert not any(name.startswith("decoder/") for name in plan.loaded)
    assert "stem/posemb/temporal_embedding" in plan.kept
