"""TFDS catalog datasets by name: local stand-ins for coco_captions and clevr (same names,
features and directory layout as the catalog's, a handful of images written to a tmp data_dir)
are read by the real loading code, batched, and trained on for a few steps."""

import collections
import io
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core import dataset_metadata
from tensorflow_datasets.datasets.clevr.clevr_dataset_builder import Builder as CatalogClevr

from mmjax.config_loader import load_config
from mmjax.config_utils import ConfigError
from mmjax.data import pipeline
from mmjax.data.datasets import get_dataset
from mmjax.data.images import resize_and_center_crop, resize_squash
from mmjax.evaluators import build_evaluator
from mmjax.experiment import Experiment, build_task
from mmjax.main import run
from mmjax.workdir import Workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
WORDS = "a the dog cat man woman red blue small large sits runs on near table street".split()


def scene(index: int, height: int, width: int) -> np.ndarray:
    """A uint8 image whose left half is dark and right half bright (a crop test can see it)."""
    rng = np.random.default_rng(index)
    image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    image[:, width // 2 :] += 180
    return image


def encode(image: np.ndarray, kind: str) -> bytes:
    out = io.BytesIO()
    PIL.Image.fromarray(image).save(out, format=kind, quality=95)
    return out.getvalue()


def sentence(rng, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS, rng.integers(low, high)))


def _no_metadata_files(cls):
    return dataset_metadata.DatasetMetadata(description="stand-in", citation="", tags=[])


class CocoCaptionsStandIn(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """coco_captions/2014 1.1.0: the catalog's features (coco.py 2014 + coco_captions.py)."""

    name = "coco_captions"
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="2014", version=tfds.core.Version("1.1.0"))]
    get_metadata = classmethod(_no_metadata_files)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(encoding_format="jpeg"),
                    "image/filename": tfds.features.Text(),
                    "image/id": np.int64,
                    "objects": tfds.features.Sequence(
                        {
                            "id": np.int64,
                            "area": np.int64,
                            "bbox": tfds.features.BBoxFeature(),
                            "label": tfds.features.ClassLabel(num_classes=80),
                            "is_crowd": np.bool_,
                        }
                    ),
                    "captions": tfds.features.Sequence({"text": np.str_, "id": np.int64}),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        # The Karpathy splits the catalog's 2014 config has (restval left out): "val" is
        # evaluated during training, "test" scored once at the end.
        return {
            "train": self._generate_examples(0, 12),
            "val": self._generate_examples(100, 4),
            "test": self._generate_examples(200, 4),
        }

    def _generate_examples(self, start: int, count: int):
        for i in range(start, start + count):
            rng = np.random.default_rng(i)
            # COCO images have 5 to 7 captions: the tasks keep the first 5.
            captions = [sentence(rng, 4, 10) for _ in range(5 + i % 3)]
            yield (
                i,
                {
                    "image": encode(scene(i, 48 + 8 * (i % 2), 64), "JPEG"),
                    "image/filename": f"COCO_{i:012d}.jpg",
                    "image/id": 1000 + i,
                    "objects": [
                        {
                            "id": i,
                            "area": 100,
                            "bbox": tfds.features.BBox(0.1, 0.2, 0.5, 0.6),
                            "label": i % 80,
                            "is_crowd": False,
                        }
                    ],
                    "captions": [{"text": t, "id": 10 * i + k} for k, t in enumerate(captions)],
                },
            )


class ClevrStandIn(CatalogClevr, skip_registration=True):
    """clevr 3.1.0 with the catalog builder's own `_info`: its features exactly."""

    name = "clevr"
    get_metadata = classmethod(_no_metadata_files)

    def _split_generators(self, dl_manager):
        return {
            "train": self._generate_examples(0, 12),
            "validation": self._generate_examples(100, 4),
            "test": self._generate_examples(200, 2, answers=False),
        }

    def _generate_examples(self, start: int, count: int, answers: bool = True):
        for i in range(start, start + count):
            rng = np.random.default_rng(i)
            qa = [
                {"question": f"how many {w} things are there?", "answer": str(i % 3 + k % 2)}
                for k, w in enumerate(rng.choice(WORDS, 8 + i % 5))  # 8 to 12 per image
            ]
            yield (
                i,
                {
                    "image": encode(scene(i, 60, 80), "PNG"),
                    "file_name": f"CLEVR_{i:06d}.png",
                    "objects": [],
                    "question_answer": [dict(q, answer=q["answer"] * answers) for q in qa],
                },
            )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tfds"))
    for builder in (CocoCaptionsStandIn, ClevrStandIn):
        builder(data_dir=root, file_format="array_record").download_and_prepare()
    return root


def config_for(name: str, data_dir: str, dataset: str, steps: int = 3):
    return load_config(
        f"{CONFIGS}/{name}:size=tiny,dataset={dataset},data_dir={data_dir},image_size=32",
        [
            f"total_steps={steps}",
            f"checkpoint_every={steps}",
            "log_every=2",
            "evals.test.batch_size=2",
            f"evals.test.every={steps}",
        ],
    )


def test_the_stand_ins_sit_where_the_catalog_puts_them(data_dir):
    assert os.path.exists(os.path.join(data_dir, "coco_captions", "2014", "1.1.0"))
    with open(os.path.join(data_dir, "clevr", "3.1.0", "features.json")) as f:
        features = json.load(f)["featuresDict"]["features"]
    assert {"image", "file_name", "objects", "question_answer"} == set(features)


def test_coco_captions_records_are_resized_and_keep_their_captions(data_dir):
    config = config_for("caption_transformer.py", data_dir, "coco_captions")
    source = get_dataset(config.data).source("train")
    assert len(source) == 12
    raw = tfds.builder_from_directory(f"{data_dir}/coco_captions/2014/1.1.0")
    raw = raw.as_data_source()["train"]
    for i in range(len(source)):
        record = source[i]
        assert record["image"].shape == (32, 32, 3) and record["image"].dtype == np.uint8
        original = raw[i]
        assert record["id"] == original["image/id"]
        assert record["captions"] == [t.decode() for t in original["captions"]["text"]]
        np.testing.assert_array_equal(
            record["image"], resize_and_center_crop(original["image"], 32)
        )
    # A centre crop of a 48x64 image keeps its middle: dark left, bright right.
    image = source[0]["image"].astype(int)
    assert image[:, :10].mean() < 80 and image[:, -10:].mean() > 170
    text_only = get_dataset(config.data).source("val", images=False)
    assert "image" not in text_only[0] and len(text_only[0]["captions"]) >= 5


def test_coco_captions_batches_for_captioning_and_retrieval(data_dir):
    for name in ("caption_transformer.py", "retrieval_dual_encoder.py"):
        config = config_for(name, data_dir, "coco_captions")
        task = build_task(config)
        task.prepare(None)
        source = get_dataset(config.data).source("train")
        batch = next(iter(pipeline.train_dataset(source, task.preprocess, 4, seed=0)))
        assert batch["image"].shape == (4, 32, 32, 3)
        # 5 to 7 captions per image become exactly 5 rows, all real.
        assert batch["captions"].shape == (4, 5, config.data.max_caption_len)
        assert (batch["captions"][:, :, 0] != 0).all()


def test_clevr_questions_are_padded_and_answers_get_a_vocabulary(data_dir, tmp_path):
    config = config_for("vqa_transformer.py", data_dir, "clevr")
    experiment = Experiment.assemble(config)
    task = experiment.task
    source = get_dataset(config.data).source("train")
    counts = collections.Counter(a for r in source for a in r["questions"]["answer"])
    # By training count, then by name.
    assert task.answers.answers == sorted(counts, key=lambda a: (-counts[a], a))
    experiment.save_vocabularies(Workdir(tmp_path))  # the run keeps the vocabulary it built
    with open(tmp_path / "answers.json") as f:
        assert json.load(f)["answers"] == task.answers.answers
    record = min(source, key=lambda r: len(r["questions"]["text"]))
    real = len(record["questions"]["text"])
    assert real == 8  # so 8 real rows and 2 padding rows
    example = task.preprocess(record)
    assert example["question"].shape == (10, 48)
    answers = [task.answers.answers.index(a) for a in record["questions"]["answer"]]
    assert list(example["answer"]) == answers + [-1, -1]
    words = task.tokenizer.decode(example["question"][0])
    assert words == record["questions"]["text"][0].replace("?", " ?")
    # CLEVR scenes are squashed whole, not cropped: the objects at the sides stay in view.
    assert config.data.resize == "squash"
    raw = tfds.builder_from_directory(f"{data_dir}/clevr/3.1.0").as_data_source()["train"]
    np.testing.assert_array_equal(source[0]["image"], resize_squash(raw[0]["image"], 32))
    config.data.resize = "stretch"
    with pytest.raises(ConfigError, match="data.resize='stretch' is not one of"):
        get_dataset(config.data).source("train")


def test_missing_catalog_dataset_says_how_to_build_it(tmp_path):
    config = config_for("caption_transformer.py", str(tmp_path), "coco_captions")
    with pytest.raises(ConfigError, match="tfds build coco_captions .*--file_format=array_record"):
        get_dataset(config.data).prepare()


class AnswerLogits(nn.Module):
    """A stand-in model: answer logits from the mean pixel and the question's tokens."""

    num_answers: int

    @nn.compact
    def __call__(self, images, questions, train=False):
        features = jnp.concatenate(
            [
                jnp.broadcast_to(images.mean((1, 2))[:, None], (*questions.shape[:2], 3)) / 255,
                questions.astype(jnp.float32) / 10,
            ],
            -1,
        )
        return nn.Dense(self.num_answers)(features), {}


def test_vqa_loss_and_metrics_leave_out_padding_and_unknown_answers(data_dir):
    config = config_for("vqa_transformer.py", data_dir, "clevr")
    task = build_task(config)
    task.prepare(None)
    source = get_dataset(config.data).source("validation")
    batch = next(iter(pipeline.eval_dataset(source, task.preprocess, 4)))
    batch["answer"][0, 0] = task.answers.unknown_id  # an answer the training split never gave
    task.model = AnswerLogits(len(task.answers))
    params = task.model.init(jax.random.key(0), batch["image"], batch["question"])["params"]
    loss, metrics = jax.jit(task.loss)(params, batch, jax.random.key(1))
    logits = np.asarray(task.model.apply({"params": params}, batch["image"], batch["question"])[0])
    answer = batch["answer"]
    valid = (answer >= 0) & (answer < len(task.answers))
    real = [min(10, len(r["questions"]["text"])) for r in source]  # 8, 9, 10 and 11 -> 10
    assert sorted(real) == [8, 9, 10, 10]
    assert (answer == -1).sum() == 40 - sum(real) and valid.sum() == sum(real) - 1
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, np.where(valid, answer, 0)[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(loss), -picked[valid].mean(), rtol=1e-5)
    hits = (logits.argmax(-1) == answer)[valid].mean()
    np.testing.assert_allclose(float(metrics["accuracy"]), hits, rtol=1e-6)
    # The evaluator counts the unknown answer (always wrong) but not the padding row.
    evaluator = build_evaluator("test", config.evals.test.to_dict(), task.evaluator_context)
    predicted = {"answer": logits.argmax(-1)}
    scores = evaluator.evaluate([(batch, predicted)])
    assert scores["count"] == sum(real)
    right = (logits.argmax(-1) == answer)[answer >= 0]
    np.testing.assert_allclose(scores["accuracy"], right.mean())


def _losses(workdir) -> list[float]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r["train/loss"] for r in map(json.loads, f) if "train/loss" in r]


@pytest.mark.slow  # about 30 s of compiling on 2 cores
def test_vqa_trains_on_clevr_by_name(data_dir, tmp_path):
    config = config_for("vqa_transformer.py", data_dir, "clevr", steps=12)
    config.data.max_question_len = 12  # the stand-in's questions have 9 tokens
    metrics = run(config, str(tmp_path))
    losses = _losses(tmp_path)
    assert len(losses) >= 2 and losses[-1] < losses[0], losses
    # 4 validation images x (8..12 questions, at most 10 kept): every real question counted once.
    assert metrics["test/count"] == sum(min(10, 8 + i % 5) for i in range(100, 104))
    assert 0.0 <= metrics["test/accuracy"] <= 1.0


@pytest.mark.slow  # about 60 s: decoding and the caption metrics compile and run
def test_captioning_and_retrieval_train_on_coco_captions_by_name(data_dir, tmp_path):
    config = config_for("caption_transformer.py", data_dir, "coco_captions", steps=12)
    metrics = run(config, str(tmp_path / "caption"))
    assert metrics["test/num_examples"] == 4
    losses = _losses(tmp_path / "caption")
    assert losses[-1] < losses[0], losses
    config = config_for("retrieval_dual_encoder.py", data_dir, "coco_captions", steps=12)
    config.batch_size = 4
    metrics = run(config, str(tmp_path / "retrieval"))
    assert 0.0 <= metrics["test/i2t_r1"] <= 1.0
    assert _losses(tmp_path / "retrieval")
