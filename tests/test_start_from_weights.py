"""docs/weights.md's commands end to end: a save_pretrained CLIP to zero-shot accuracy and a
captioner, and one run's image stem to another task's model.

A tiny random-weight CLIPModel (built here from a config, no download) is saved with
`save_pretrained` next to a tokenizer.json trained here on Sort-of-CLEVR captions. Then, as
the page does: `python -m mmjax.weights show`, the zero-shot evaluation with
`--config.total_steps=0`, a captioner with the CLIP image tower frozen (whose final checkpoint
must hold that tower bitwise), and a VQA model from a retrieval run's stem.

Slow (1.3 minutes on the 2-core machine alone, 4-6 shared: six `python -m mmjax.main` runs);
`python -m pytest -q -m slow tests/test_start_from_weights.py`. Needs the [convert] extra.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mmjax.train.checkpoints import restore_params
from mmjax.weights import hf, posemb, tree
from mmjax.workdir import read_metrics

torch = pytest.importorskip("torch", reason='needs torch: pip install -e ".[convert]"')
transformers = pytest.importorskip(
    "transformers", reason='needs transformers: pip install -e ".[convert]"'
)

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "size=tiny,num_train=16,num_test=8"


def _save_clip(directory):
    """A tiny random CLIPModel and a word-level tokenizer.json for Sort-of-CLEVR's words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    from mmjax.projects.sort_of_clevr import scenes

    rng = np.random.default_rng(0)
    texts = [
        caption
        for _ in range(60)
        for caption in scenes.make_captions(rng, scenes.generate_scene(rng)["objects"])
    ]
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    special = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=special))
    bos, eos = tokenizer.token_to_id("[BOS]"), tokenizer.token_to_id("[EOS]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", bos), ("[EOS]", eos)]
    )
    tokenizer.save(str(directory / "tokenizer.json"))
    torch.manual_seed(0)
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=tokenizer.get_vocab_size(),
            max_position_embeddings=80,
            bos_token_id=bos,
            eos_token_id=eos,
            **tower,
        ),
        vision_config=dict(image_size=32, patch_size=8, **tower),
        projection_dim=16,
    )
    transformers.CLIPModel(config).save_pretrained(directory)


def _run(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _main(config, workdir, data_dir, *overrides):
    return _run(
        "-m",
        "mmjax.main",
        f"--config={config}",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        *overrides,
    )


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    clip = tmp_path_factory.mktemp("clip")
    _save_clip(clip)
    return clip, tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("runs")


def test_show_zero_shot_and_a_captioner_on_the_frozen_clip_tower(dirs):
    clip, data, runs = dirs
    shown = _run("-m", "mmjax.weights", "show", str(clip), "--model=captioner")
    assert "model.class_token = 'with_posemb'" in shown and "model.encoder_depth = 1" in shown

    # Zero-shot: the imported weights evaluated as they are, nothing trained.
    zero_shot = runs / "clip_zero_shot"
    config = f"configs/retrieval_dual_encoder.py:{TINY},init={clip}"
    _main(config, zero_shot, data, "--config.total_steps=0")
    final = read_metrics(str(zero_shot))[-1]
    assert final["step"] == 0 and final["zero_shot/num_examples"] == 200
    assert 0 <= final["zero_shot/top1"] <= final["zero_shot/top3"] <= 1
    record = json.loads((zero_shot / "init_from.json").read_text())
    assert record["kind"] == "hugging_face" and record["kept_initial"] == ["logit_bias"]
    assert (zero_shot / "hf_tokenizer.json").exists()

    # A captioner on CLIP's image tower, frozen: its checkpoint holds the tower bitwise.
    captioner = runs / "caption_clip"
    _main(
        f"configs/caption_transformer.py:{TINY},steps=3,init={clip}",
        captioner,
        data,
        "--config.optim.frozen=^(stem|image_encoder)/",
    )
    _, params = restore_params(str(captioner / "checkpoints"))
    trained = tree.as_numpy(tree.flatten(params))
    imported = hf.load(str(clip)).params
    name = "stem/posemb/pos_embedding"
    assert trained[name].shape == (1, 1 + 9 * 9, 32)  # 75-pixel images, 8-pixel patches
    np.testing.assert_array_equal(trained[name], posemb.resample(imported[name], 82))
    tower = [k for k in imported if k.startswith(("stem/", "image_encoder/")) and k != name]
    for key in tower:
        np.testing.assert_array_equal(trained[key], imported[key], err_msg=key)
    assert not any(k.startswith(("text_", "logit")) for k in trained)


def test_a_vqa_model_from_a_retrieval_runs_stem(dirs):
    _, data, runs = dirs
    # The VQA tiny config's stem: 5-pixel patches from 15-pixel windows, 64 salient tokens.
    stem = [
        "--config.model.stem=patch",
        "--config.model.patch_size=5",
        "--config.model.patch_kernel=15",
        "--config.model.keep_tokens=64",
        "--config.model.token_selector=salient_patches",
    ]
    retrieval = runs / "retrieval"
    _main(f"configs/retrieval_dual_encoder.py:{TINY},steps=3", retrieval, data, *stem)
    vqa = runs / "vqa_from_retrieval"
    _main(
        f"configs/vqa_transformer.py:{TINY},steps=2",
        vqa,
        data,
        f"--config.init_from.path={retrieval}",
        "--config.init_from.include=^stem/",
    )
    record = json.loads((vqa / "init_from.json").read_text())
    assert record["kind"] == "workdir" and record["step"] == 3
    assert sorted(record["loaded"]) == [
        "stem/embedding/bias",
        "stem/embedding/kernel",
        "stem/embedding_norm/bias",
        "stem/embedding_norm/scale",
    ]
