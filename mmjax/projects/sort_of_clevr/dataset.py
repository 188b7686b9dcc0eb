"""Sort-of-CLEVR through the dataset contract (`mmjax.data.datasets.Dataset`).

Built locally on first use (TFDS builder, ArrayRecord files) into data.data_dir when missing
and data.build_if_missing is set. Records come in the common layout with answers as words;
each question also carries its type ("subtype", for accuracy per type) and its 11-number code
("question_code", read by the Relation Network models). Its question tokenizer and its ten
answers are fixed by the templates, not built from data.
"""

from __future__ import annotations

import fcntl
import functools
import os

import numpy as np

from mmjax.config_utils import ConfigError
from mmjax.data.datasets import CheckedSource, Dataset
from mmjax.data.errors import DataError
from mmjax.data.tokenizer import WordTokenizer
from mmjax.projects.sort_of_clevr import scenes

# The config.data entries of the dataset, with their defaults (`data_entries`).
DEFAULTS = dict(
    num_train=9800,
    num_validation=200,
    num_test=200,
    dataset_seed=0,
    build_if_missing=True,
    questions_per_image=scenes.NUM_QUESTIONS,
    # The preprocessed training split: about 19 kB a scene (190 MB for the default 9,800).
    cache_mb=1024,
)


def data_entries(**overrides) -> dict:
    """`DEFAULTS` with `overrides`, for a config's `mmjax.data.catalog.data_config` call."""
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"Sort-of-CLEVR has no data entries {sorted(unknown)}")
    return dict(DEFAULTS, **overrides)


@functools.cache
def question_tokenizer() -> WordTokenizer:
    """The tokenizer of every Sort-of-CLEVR question (all colors x all subtypes).

    Built from the templates rather than data, so its ids never depend on a dataset.
    """
    return WordTokenizer.build(known_questions())


def known_questions() -> list[str]:
    """The text of every question the generator asks (colors x subtypes)."""
    return [
        scenes.question_text(color, subtype)
        for color in range(len(scenes.COLORS))
        for subtype in range(len(scenes.SUBTYPES))
    ]


def object_annotations(objects: dict, image_size: int) -> dict[str, np.ndarray]:
    """The scene's objects ordered by colour, for the scene-caption and probe evaluators.

    "object_shape" int32 [6], "object_center" int32 [6, 2] (x, y), and "probe_labels" int32
    [18]: the shape (0 square, 1 circle), whether on the left (x < S/2) and whether on top
    (y < S/2) of the object of each colour.
    """
    order = np.argsort(np.asarray(objects["color"]))
    shape = np.asarray(objects["shape"], np.int32)[order]
    center = np.asarray(objects["center"], np.int32)[order]
    half = image_size / 2
    probe = np.concatenate([shape, center[:, 0] < half, center[:, 1] < half]).astype(np.int32)
    return {"object_shape": shape, "object_center": center, "probe_labels": probe}


def _with_answer_words(record: dict, index: int) -> dict:
    """The record with its answer ids as words; DataError naming an id outside the ten."""
    questions = dict(record["questions"])
    answer = np.asarray(questions["answer"])
    outside = (answer < 0) | (answer >= len(scenes.ANSWERS))
    if outside.any():
        i = int(np.argmax(outside))
        raise DataError(
            f"record {record.get('id', index)}: answer {answer[i]} of question {i} is outside "
            f"the {len(scenes.ANSWERS)} answers {list(scenes.ANSWERS)}"
        )
    questions["answer"] = [scenes.ANSWERS[a] for a in answer]
    return dict(record, questions=questions)


class SortOfClevr(Dataset):
    """The built-in dataset (see the module docstring and `scenes`)."""

    question_fields = {"subtype": ("subtype", np.int32), "question_code": ("code", np.float32)}

    def _sizes(self) -> dict:
        c = self.config
        return dict(
            num_train=c.num_train,
            num_validation=c.get("num_validation", DEFAULTS["num_validation"]),
            num_test=c.num_test,
            image_size=c.image_size,
            seed=c.dataset_seed,
        )

    def prepare(self) -> None:
        """Builds the dataset under data_dir if it is missing and building is allowed."""
        if not self.config.get("build_if_missing", True):
            return
        from mmjax.projects.sort_of_clevr.tfds_builder import build_sort_of_clevr

        os.makedirs(self.data_dir, exist_ok=True)
        # Runs started together (a sweep, several users) would otherwise build the same
        # dataset at once, and TFDS's final rename fails for all but one of them.
        with open(os.path.join(self.data_dir, ".mmjax-build.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            build_sort_of_clevr(self.data_dir, **self._sizes())

    def raw_source(self, split: str, transform=None) -> CheckedSource:
        """The split's records as stored (answers as ids into `scenes.ANSWERS`).

        `transform(record, index)`, when given, maps each record.
        """
        from mmjax.projects.sort_of_clevr.tfds_builder import load_sort_of_clevr

        if split not in self.splits:
            raise ConfigError(f"Sort-of-CLEVR has no split {split!r}; it has {list(self.splits)}")
        try:
            records = load_sort_of_clevr(self.data_dir, split, **self._sizes())
        except FileNotFoundError as error:
            raise ConfigError(
                f"dataset {self.name!r} not found in data.data_dir={self.data_dir!r} ({error}); "
                "set data.build_if_missing=True to build it"
            ) from None
        return CheckedSource(
            records,
            f"{self.name} {split}",
            f"; the files under {self.data_dir} are damaged: delete the dataset's directory "
            "there to rebuild it",
            transform=transform,
        )

    def source(self, split: str, images: bool = True) -> CheckedSource:
        """The split's records in the common layout (answers as words)."""
        del images  # the scenes are small: reading them whole costs little
        return self.raw_source(split, _with_answer_words)

    def provided_tokenizer(self, kind: str, field: str):
        """The template tokenizer for the questions; captions get one built from data."""
        return question_tokenizer() if field == "questions" and kind == "word" else None

    def provided_answers(self) -> list[str]:
        """The ten answers, in the generator's id order."""
        return list(scenes.ANSWERS)

    def annotations(self, record: dict) -> dict[str, np.ndarray]:
        """The objects by colour (`object_annotations`)."""
        return object_annotations(record["objects"], self.config.image_size)

    def answer_baseline(self, split: str) -> tuple[str, dict[str, float]]:
        """The question-only baseline, per question type (`question_only_baseline`)."""
        from mmjax.projects.sort_of_clevr.baselines import question_only_baseline

        return "question-only", question_only_baseline(
            self.raw_source("train"), self.raw_source(split)
        )

    def known_questions(self) -> list[str]:
        """Every template question."""
        return known_questions()
