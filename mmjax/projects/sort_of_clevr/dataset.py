"""Sort-of-CLEVR through the dataset contract (`mmjax.data.datasets.Dataset`).

Built locally on first use (TFDS builder, ArrayRecord files) into data.data_dir when missing
and data.build_if_missing is set. Records come in the common layout with answers as words;
each question also carries its type ("subtype", for accuracy per type) and its 11-number code
("question_code", read by the Relation Network models). Its question tokenizer and its ten
answers are fixed by the templates, not built from data. Grouping attributes (disparity): each
question's object's colour, shape and quadrant, its answer type and question type, and each
scene's number of squares; the counterfactual probe "color_swap" asks each question about
another colour (split "<split>:color_swap").
"""

from __future__ import annotations

import functools

import numpy as np

from mmjax.config_utils import ConfigError
from mmjax.data.datasets import CheckedSource, LocallyBuiltDataset
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

    "object_shape" int32 [6], "object_center" int32 [6, 2] (x, y), "object_cell" int32 [6]
    (the 3x3-grid cell the captions name, an index into `scenes.CELLS`: the labels of the
    zero-shot evaluation), and "probe_labels" int32 [18]: the shape (0 square, 1 circle),
    whether on the left (x < S/2) and whether on top (y < S/2) of the object of each colour.
    """
    order = np.argsort(np.asarray(objects["color"]))
    shape = np.asarray(objects["shape"], np.int32)[order]
    center = np.asarray(objects["center"], np.int32)[order]
    cell = np.array([scenes.cell_index(x, y, image_size) for x, y in center], np.int32)
    half = image_size / 2
    probe = np.concatenate([shape, center[:, 0] < half, center[:, 1] < half]).astype(np.int32)
    return {
        "object_shape": shape,
        "object_center": center,
        "object_cell": cell,
        "probe_labels": probe,
    }


ANSWER_TYPES = {"left": "yes/no", "top": "yes/no", "count": "number"}  # the others: "other"
SWAP_SEED = 20170605  # the colour swaps' seed stream, apart from the generator's


def question_attributes(objects: dict, questions: dict, image_size: int) -> dict[str, list[str]]:
    """The grouping attributes of `SortOfClevr.question_attributes`, one value per question."""
    color = np.asarray(questions["color"])
    order = np.argsort(np.asarray(objects["color"]))[color]  # the object of each question
    shape = np.asarray(objects["shape"])[order]
    x, y = np.asarray(objects["center"])[order].T
    half = image_size / 2
    subtype = [scenes.SUBTYPES[s] for s in np.asarray(questions["subtype"])]
    return {
        "color": [scenes.COLOR_NAMES[c] for c in color],
        "shape": [scenes.SHAPES[s] for s in shape],
        "quadrant": [
            f"{'top' if b < half else 'bottom'} {'left' if a < half else 'right'}"
            for a, b in zip(x, y)
        ],
        "answer_type": [ANSWER_TYPES.get(s, "other") for s in subtype],
        "question_type": subtype,
    }


def swap_colors(record: dict, image_size: int) -> dict:
    """The record (common layout) with each question asked about another colour of its scene.

    Question i's colour c becomes (c + k) mod 6, k drawn uniformly from 1..5 by a generator
    seeded with (SWAP_SEED, record id, i), so the probe is the same in every run. Text, code and
    answer are those of the new question (the answer recomputed from the scene); the old answer
    is kept in "original_answer".
    """
    questions = dict(record["questions"])
    color, subtype = np.asarray(questions["color"]), np.asarray(questions["subtype"])
    rng = np.random.default_rng([SWAP_SEED, int(record.get("id", 0))])
    new = (color + rng.integers(1, scenes.NUM_OBJECTS, size=color.shape)) % scenes.NUM_OBJECTS
    new = new.astype(np.int32)
    answers = scenes.answer_questions(
        record["objects"], {"color": new, "subtype": subtype}, image_size
    )
    questions.update(
        original_answer=list(questions["answer"]),
        answer=[scenes.ANSWERS[a] for a in answers],
        color=new,
        text=[scenes.question_text(c, s) for c, s in zip(new, subtype)],
        code=scenes.question_codes(new, subtype).astype(np.asarray(questions["code"]).dtype),
    )
    return dict(record, questions=questions)


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


class SortOfClevr(LocallyBuiltDataset):
    """The built-in dataset (see the module docstring and `scenes`)."""

    title = "Sort-of-CLEVR"

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

        self.build_locked(lambda: build_sort_of_clevr(self.data_dir, **self._sizes()))

    def raw_source(self, split: str, transform=None) -> CheckedSource:
        """The split's records as stored (answers as ids into `scenes.ANSWERS`).

        `transform(record, index)`, when given, maps each record.
        """
        from mmjax.projects.sort_of_clevr.tfds_builder import load_sort_of_clevr

        return self.stored_source(
            split, lambda: load_sort_of_clevr(self.data_dir, split, **self._sizes()), transform
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
        """The objects by colour (`object_annotations`); {} for a record without its scene."""
        if "objects" not in record:
            return {}  # a record made by hand (predict, tests, notebooks)
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

    def question_attributes(self, record: dict) -> dict[str, list[str]]:
        """Each question's object: its colour, shape and quadrant; and the answer's type.

        The object is the one of the question's colour; quadrant "top left" .. "bottom right"
        (x, y < S/2 is left, top); answer_type "yes/no" (left, top), "number" (count) or
        "other" (the shape questions), as VQAv2 names them.
        """
        if "objects" not in record or "color" not in record.get("questions", {}):
            return {}  # a record made by hand (tests, notebooks) without its scene
        return question_attributes(record["objects"], record["questions"], self.config.image_size)

    def image_attributes(self, record: dict) -> dict[str, str]:
        """How many of the scene's six objects are squares, as "squares" ("0" .. "6")."""
        if "objects" not in record:
            return {}
        return {"squares": str(int(np.sum(np.asarray(record["objects"]["shape"]) == 0)))}

    def counterfactual(self, record: dict, kind: str) -> dict:
        """`record` with each question's colour word swapped ("color_swap", `swap_colors`)."""
        if kind != "color_swap":
            raise ConfigError(f"Sort-of-CLEVR has no probe {kind!r}; it has ['color_swap']")
        return swap_colors(record, self.config.image_size)
