"""The lines of a custom dataset's JSONL file (`mmjax.data.custom`): parsing and checking.

A line is a JSON object about one image:

  {"image": "cat.jpg", "captions": ["a cat on a mat", ...]}
  {"image": "cat.jpg", "question": "what animal is it?", "answer": "cat"}
  {"image": "cat.jpg", "question": "what animal is it?", "answers": ["cat", "cat", "kitten", ...]}

with an optional "split" ("train" | "validation"). "answers" holds several human answers of
one question (VQAv2 has ten): the VQA accuracy is scored against them, and the training target
is their soft score; without "answer", the question's answer is the most frequent of them
(the first of the most frequent on a tie). Any other field whose value is a string, number or
boolean is a grouping attribute for the disparity evaluator: of the question on a question line
(e.g. "answer_type": "yes/no"), of the image on a caption line (e.g. "source": "web"); numbers
and booleans are kept as their JSON text ("3", "true"), and fields of other types are ignored.
"""

from __future__ import annotations

import collections
import dataclasses
import json

SPLITS = ("train", "validation")
RESERVED = frozenset({"image", "captions", "question", "answer", "answers", "split"})


class BadLine(ValueError):
    """A JSONL line that cannot be used; the message says why."""


@dataclasses.dataclass
class Question:
    """One question of a line: its text, answer, the humans' answers and its attributes."""

    text: str
    answer: str
    answers: list[str] = dataclasses.field(default_factory=list)
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Entry:
    """Everything the JSONL file says about one image."""

    path: str
    line: int  # the first line that names it
    split: str | None = None
    captions: list[str] = dataclasses.field(default_factory=list)
    questions: list[Question] = dataclasses.field(default_factory=list)
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Line:
    """A parsed line: the image path as written, and what it says about the image."""

    image: str
    captions: list[str]
    questions: list[Question]
    attributes: dict[str, str]
    split: str | None


def _text(obj: dict, key: str) -> str:
    value = obj.get(key)
    if value is None:
        raise BadLine(f"missing field {key!r}")
    if not isinstance(value, str):
        raise BadLine(f"field {key!r} is {type(value).__name__}, not a string")
    if not value.strip():
        raise BadLine(f"field {key!r} is empty")
    return value.strip()


def _texts(obj: dict, key: str, what: str) -> list[str]:
    values = obj[key]
    if not isinstance(values, list) or not values:
        raise BadLine(f"field {key!r} must be a non-empty list of strings")
    out = []
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise BadLine(f"{what} {i} is {type(value).__name__}, not a string")
        if not value.strip():
            raise BadLine(f"{what} {i} is empty")
        out.append(value.strip())
    return out


def _attributes(obj: dict) -> dict[str, str]:
    """The line's grouping attributes: its other fields with scalar values, as text."""
    out = {}
    for key, value in obj.items():
        if key in RESERVED or not isinstance(value, str | int | float | bool):
            continue
        out[key] = value if isinstance(value, str) else json.dumps(value)
    return out


def _question(obj: dict, attributes: dict[str, str]) -> Question:
    question = _text(obj, "question")
    answers = _texts(obj, "answers", "answer") if "answers" in obj else []
    if "answer" in obj or not answers:
        answer = _text(obj, "answer")
    else:
        answer = collections.Counter(answers).most_common(1)[0][0]
    return Question(question, answer, answers, attributes)


def parse_line(text: str) -> Line:
    """One JSONL line -> its `Line`.

    Raises BadLine saying what is wrong: not a JSON object, no image, neither captions nor a
    question with its answer(s), a caption or answer list that is not non-empty strings, empty
    text, or a split other than train/validation.
    """
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadLine(f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(obj, dict):
        raise BadLine(f"a {type(obj).__name__}, not a JSON object")
    image = _text(obj, "image")
    captions = _texts(obj, "captions", "caption") if "captions" in obj else []
    attributes = _attributes(obj)
    questions = []
    if {"question", "answer", "answers"} & obj.keys():
        questions.append(_question(obj, attributes))
    if not captions and not questions:
        raise BadLine("missing field: a line needs 'captions', or 'question' and 'answer'")
    split = obj.get("split")
    if split is not None and split not in SPLITS:
        raise BadLine(f"split {split!r} is not one of {list(SPLITS)}")
    # A question line's fields describe the question; a caption line's, the image.
    return Line(image, captions, questions, attributes if captions else {}, split)
