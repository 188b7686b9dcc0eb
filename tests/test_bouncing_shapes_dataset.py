"""Bouncing shapes stored and served: the TFDS build, the dataset contract, baseline, evals.

Builds a tiny dataset (12 / 4 / 5 clips) once per module; every record read back is compared
with the clip the generator makes for its (seed, split, index).
"""

import pickle

import numpy as np
import pytest

from mmjax.projects.bouncing_shapes import captions, clips, questions
from mmjax.projects.bouncing_shapes import tfds_builder as bs_tfds

S, T = 64, 8
SIZES = dict(num_train=12, num_validation=4, num_test=5)


# ---------------------------------------------------------------- TFDS


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("bouncing_shapes")
    bs_tfds.build_bouncing_shapes(data_dir, **SIZES)
    return data_dir


def test_tfds_round_trip(built):
    for split in clips.SPLITS:
        source = bs_tfds.load_bouncing_shapes(built, split, **SIZES)
        assert len(source) == SIZES[f"num_{split}"]
        record = source[len(source) - 1]
        clip = clips.generate_clip(clips.clip_rng(0, split, len(source) - 1))
        np.testing.assert_array_equal(record["video"], clip["video"])
        for key, value in clip["objects"].items():
            np.testing.assert_array_equal(record["objects"][key], value)
        for key in ("family", "subject", "other", "third", "answer"):
            np.testing.assert_array_equal(record["questions"][key], clip["questions"][key])
        assert [t.decode() for t in record["questions"]["text"]] == clip["questions"]["text"]
        assert [c.decode() for c in record["captions"]] == clip["captions"]


def test_tfds_build_is_deterministic(built, tmp_path):
    # Byte-identical within a process. Across processes the records' tf.Example protos parse
    # equal (test_tfds_round_trip) but their bytes differ: protobuf writes the feature map in
    # a per-process order.
    a = bs_tfds.build_bouncing_shapes(built, **SIZES)
    b = bs_tfds.build_bouncing_shapes(tmp_path, **SIZES)
    files = sorted(f for f in a.data_path.iterdir() if "array_record" in f.name)
    assert len(files) == 3
    for path in files:
        assert path.read_bytes() == (b.data_path / path.name).read_bytes(), path.name
    assert a.builder_config.name == "n12_v4_t5_f8_s64_o4_seed0"


def test_tfds_source_pickles_and_missing_build_names_dir(built, tmp_path):
    source = bs_tfds.load_bouncing_shapes(built, "test", **SIZES)
    copy = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(copy[2]["video"], source[2]["video"])
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        bs_tfds.load_bouncing_shapes(tmp_path, "train", **SIZES)


# sha256 of the video of clip 0 (seed 0, defaults) of each split: a change to the generator
# that changes the data shows here.


# ---------------------------------------------------------------- the dataset contract


def dataset_of(data_dir, **entries):
    import ml_collections

    from mmjax.data.catalog import data_config
    from mmjax.data.datasets import get_dataset
    from mmjax.projects.bouncing_shapes.dataset import data_entries

    sizes = {k: v for k, v in SIZES.items()}
    config = data_config("bouncing_shapes", str(data_dir), S, **data_entries(**sizes, **entries))
    return get_dataset(ml_collections.ConfigDict(config))


def test_dataset_contract(built):
    from mmjax.data.tokenizer import UNK

    dataset = dataset_of(built, image_frame=T // 2)
    dataset.prepare()  # built already: a no-op
    record = dataset.source("validation")[1]
    clip = clips.generate_clip(clips.clip_rng(0, "validation", 1))
    np.testing.assert_array_equal(record["video"], clip["video"])
    np.testing.assert_array_equal(record["image"], clip["video"][T // 2])
    assert record["questions"]["answer"] == [
        questions.ANSWERS[a] for a in clip["questions"]["answer"]
    ]
    assert record["questions"]["text"] == clip["questions"]["text"]
    assert record["captions"] == clip["captions"]
    assert dataset.provided_answers() == list(questions.ANSWERS)
    assert set(dataset.known_questions()) >= set(record["questions"]["text"])
    tokenizer = dataset.provided_tokenizer("word", "captions")
    assert tokenizer is dataset.provided_tokenizer("word", "questions")
    for text in record["questions"]["text"] + record["captions"]:
        assert UNK not in tokenizer.tokens_to_ids(text), text
    notes = dataset.annotations(record)
    order = np.argsort(clip["objects"]["color"])
    np.testing.assert_array_equal(notes["object_color"], clip["objects"]["color"][order])
    assert captions.motion_accuracy(record["captions"][0], notes) == 1.0
    copy = pickle.loads(pickle.dumps(dataset.source("validation")))  # as grain workers get it
    np.testing.assert_array_equal(copy[1]["image"], record["image"])
    attributes = dataset.question_attributes(record)
    assert attributes["family"] == [
        questions.QUESTION_FAMILIES[f] for f in clip["questions"]["family"]
    ]


def test_question_only_baseline(built):
    from mmjax.projects.bouncing_shapes.baselines import question_only_baseline

    name, scores = dataset_of(built).answer_baseline("test")
    assert name == "question-only"
    assert set(scores) == set(questions.QUESTION_FAMILIES) | {"motion", "static", "overall"}
    # Against a hand count: train answers "b" twice for text "q"; test asks "q" twice.
    row = {"text": ["q", "q", "q"], "answer": ["a", "b", "b"], "family": [0, 0, 2]}
    test = {"text": ["q", "q"], "answer": ["b", "a"], "family": [0, 2]}
    result = question_only_baseline([{"questions": row}], [{"questions": test}])
    assert result["shape"] == 1.0 and result["direction"] == 0.0 and result["overall"] == 0.5
    assert result["static"] == 1.0 and result["motion"] == 0.0


def test_dataset_bad_input(built, tmp_path):
    from mmjax.config_utils import ConfigError

    with pytest.raises(ConfigError, match="image_frame=8"):
        dataset_of(built, image_frame=T).prepare()
    with pytest.raises(ConfigError, match="no split 'val'"):
        dataset_of(built).source("val")
    with pytest.raises(ConfigError, match="not found"):
        dataset_of(tmp_path, build_if_missing=False).source("train")
    with pytest.raises(ConfigError, match="no data entries"):
        dataset_of(built, num_clips=3)
    for entry, message in (
        ("num_frames", "num_frames must be in 6..24, got 30"),
        ("num_objects", "num_objects must be in 3..6, got 30"),
    ):
        with pytest.raises(ConfigError, match=message):
            dataset_of(tmp_path, **{entry: 30}).prepare()
    assert not list(tmp_path.iterdir())  # nothing written


def test_answer_evals_slice_by_family():
    from mmjax.evaluators.classification import sliced_accuracy
    from mmjax.projects.bouncing_shapes.evals import answer_evals

    evals = answer_evals(batch_size=8, every=100)
    assert evals["validation"]["split"] == "validation" and evals["test"]["split"] == "test"
    assert evals["validation"]["every"] == 100 and evals["test"]["every"] == 0
    spec = evals["validation"]
    assert spec["slice_key"] == "family"
    # One right answer per family but shape, on a hand-made batch: motion 6/6, static 1/2.
    families = np.arange(len(questions.QUESTION_FAMILIES))
    labels = np.zeros_like(families)
    predictions = np.where(families == questions.QUESTION_FAMILIES.index("shape"), 1, 0)
    scores = sliced_accuracy(labels, predictions, families, spec["slice_names"], spec["groups"])
    assert scores["motion"] == 1.0 and scores["static"] == 0.5 and scores["shape"] == 0.0
