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


@pytest.mark.slow  # 4-7 minutes on the shared 2-core CPU (load 11-15), both runs
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
