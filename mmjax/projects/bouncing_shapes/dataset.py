"""Bouncing shapes through the dataset contract (`mmjax.data.datasets.Dataset`).

Built locally on first use (TFDS builder, ArrayRecord files) into data.data_dir when missing
and data.build_if_missing is set. Records come in the common layout with a "video" (uint8
[T, S, S, 3]) where image datasets have an "image":

  {"id": int, "video": uint8 [T, S, S, 3], "captions": 5 str,
   "questions": {"text": Q str, "answer": Q str, "family": int32 [Q] (index into
                 questions.QUESTION_FAMILIES), "subject", "other", "third": int32 [Q]
                 (the objects the question names, -1: none)},
   "objects": {...} (clips.sample_objects)}

and, when data.image_frame >= 0, also "image": that frame (for image models, e.g. a
single-frame baseline; the middle frame is num_frames // 2). The question and caption
tokenizer (words) and the answers are fixed by the templates, not built from data.
"""

from __future__ import annotations

import functools

import numpy as np

from mmjax.config_utils import ConfigError
from mmjax.data.datasets import CheckedSource, LocallyBuiltDataset, as_text
from mmjax.data.errors import DataError
from mmjax.data.tokenizer import WordTokenizer
from mmjax.projects.bouncing_shapes import captions, clips, motion, questions

# The config.data entries of the dataset, with their defaults (`data_entries`); image_size
# (64) is the catalog's data_config argument. The default build takes about a minute and
# 0.9 GB (docs/video.md).
DEFAULTS = dict(
    num_train=8000,
    num_validation=500,
    num_test=500,
    num_frames=clips.NUM_FRAMES,
    num_objects=clips.NUM_OBJECTS,
    dataset_seed=0,
    build_if_missing=True,
    questions_per_image=questions.NUM_QUESTIONS,
    image_frame=-1,
)


def data_entries(**overrides) -> dict:
    """`DEFAULTS` with `overrides`, for a config's `mmjax.data.catalog.data_config` call."""
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"bouncing_shapes has no data entries {sorted(unknown)}")
    return dict(DEFAULTS, **overrides)


def known_questions() -> list[str]:
    """Every question the generator can ask (families x colours, and colour pairs)."""
    return questions.known_questions()


@functools.cache
def word_tokenizer() -> WordTokenizer:
    """The word tokenizer of every question and caption, built from the templates."""
    return WordTokenizer.build(known_questions() + captions.vocabulary_texts())


def object_annotations(objects: dict) -> dict[str, np.ndarray]:
    """The clip's objects in colour order, for evaluators (captions' motion check, probes).

    int32 arrays over the N objects sorted by colour id: "object_color" (ids into
    motion.COLORS), "object_shape", "object_direction" (starting direction, index into
    motion.DIRECTIONS), "object_wall_hits"; "object_start" [N, 2] (x, y in the first frame).
    """
    order = np.argsort(np.asarray(objects["color"]), kind="stable")
    return {
        "object_color": np.asarray(objects["color"], np.int32)[order],
        "object_shape": np.asarray(objects["shape"], np.int32)[order],
        "object_direction": motion.start_direction(objects["position"])[order],
        "object_wall_hits": np.asarray(objects["wall_hits"], np.int32)[order],
        "object_start": np.asarray(objects["start"], np.int32)[order],
    }


def common_record(record: dict, index: int, image_frame: int = -1) -> dict:
    """A stored record in the common layout: answers and texts as str, "image" if asked.

    Raises DataError naming the record when an answer id is outside `questions.ANSWERS`.
    """
    q = dict(record["questions"])
    answer = np.asarray(q["answer"])
    outside = (answer < 0) | (answer >= len(questions.ANSWERS))
    if outside.any():
        i = int(np.argmax(outside))
        raise DataError(
            f"record {record.get('id', index)}: answer {answer[i]} of question {i} is outside "
            f"the {len(questions.ANSWERS)} answers"
        )
    q["answer"] = [questions.ANSWERS[a] for a in answer]
    q["text"] = [as_text(t) for t in q["text"]]
    out = dict(record, questions=q, captions=[as_text(c) for c in record["captions"]])
    if image_frame >= 0:
        out["image"] = record["video"][image_frame]
    return out


class BouncingShapes(LocallyBuiltDataset):
    """The built-in video dataset (see the module docstring and `clips`)."""

    title = "bouncing_shapes"

    question_fields = {"family": ("family", np.int32)}

    def _settings(self) -> dict:
        c = self.config
        return dict(
            num_train=c.num_train,
            num_validation=c.get("num_validation", DEFAULTS["num_validation"]),
            num_test=c.num_test,
            num_frames=c.get("num_frames", DEFAULTS["num_frames"]),
            image_size=c.image_size,
            num_objects=c.get("num_objects", DEFAULTS["num_objects"]),
            seed=c.get("dataset_seed", DEFAULTS["dataset_seed"]),
        )

    def prepare(self) -> None:
        """Builds the dataset under data_dir if it is missing and building is allowed."""
        frame = self.config.get("image_frame", -1)
        frames = self._settings()["num_frames"]
        if not -1 <= frame < frames:
            raise ConfigError(f"data.image_frame={frame} is outside -1..{frames - 1}")
        settings = self._settings()
        try:
            clips.check_settings(
                settings["num_frames"], settings["image_size"], settings["num_objects"]
            )
        except ValueError as error:
            raise ConfigError(f"bouncing_shapes: {error}") from None
        if not self.config.get("build_if_missing", True):
            return
        from mmjax.projects.bouncing_shapes.tfds_builder import build_bouncing_shapes

        self.build_locked(lambda: build_bouncing_shapes(self.data_dir, **settings))

    def raw_source(self, split: str, transform=None) -> CheckedSource:
        """The split's records as stored (answers as ids into `questions.ANSWERS`)."""
        from mmjax.projects.bouncing_shapes.tfds_builder import load_bouncing_shapes

        return self.stored_source(
            split, lambda: load_bouncing_shapes(self.data_dir, split, **self._settings()), transform
        )

    def source(self, split: str, images: bool = True) -> CheckedSource:
        """The split's records in the common layout (module docstring)."""
        del images  # clips are read whole; 98 kB each at the default size
        frame = self.config.get("image_frame", -1)
        return self.raw_source(split, functools.partial(_common, image_frame=frame))

    def provided_tokenizer(self, kind: str, field: str):
        """The template word tokenizer, for questions and captions alike."""
        return word_tokenizer() if kind == "word" else None

    def provided_answers(self) -> list[str]:
        """Every answer of every family (`questions.ANSWERS`)."""
        return list(questions.ANSWERS)

    def annotations(self, record: dict) -> dict[str, np.ndarray]:
        """The objects in colour order (`object_annotations`); {} for a record without them."""
        if "objects" not in record:
            return {}  # a record made by hand (predict, tests)
        return object_annotations(record["objects"])

    def answer_baseline(self, split: str) -> tuple[str, dict[str, float]]:
        """The question-only baseline per family (`baselines.question_only_baseline`)."""
        from mmjax.projects.bouncing_shapes.baselines import question_only_baseline

        return "question-only", question_only_baseline(
            self.source("train", images=False), self.source(split, images=False)
        )

    def known_questions(self) -> list[str]:
        """Every template question."""
        return known_questions()

    def question_attributes(self, record: dict) -> dict[str, list[str]]:
        """Each question's family and the colour of its subject ("" for fastest/slowest)."""
        q = record.get("questions", {})
        if "objects" not in record or "family" not in q or "subject" not in q:
            return {}
        colors = np.asarray(record["objects"]["color"])
        return {
            "family": [questions.QUESTION_FAMILIES[f] for f in np.asarray(q["family"])],
            "color": [motion.COLOR_NAMES[colors[s]] if s >= 0 else "" for s in q["subject"]],
        }


def _common(record: dict, index: int, image_frame: int) -> dict:
    return common_record(record, index, image_frame)
