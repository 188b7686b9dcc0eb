"""A run's tokenizer and answer vocabulary.

Each is read back from the run's workdir, else fixed by the dataset, else built from the
training split, in that order.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from mmjax.config_utils import ConfigError
from mmjax.data.answers import AnswerVocabulary
from mmjax.data.datasets import as_text
from mmjax.data.errors import DataError
from mmjax.data.tokenizer import build_tokenizer, load_tokenizer
from mmjax.workdir import ANSWERS_FILE, TOKENIZER_FILES


def tokenizer_kind(config) -> str:
    """config.tokenizer.kind, checked; ConfigError naming the known kinds."""
    kind = config.tokenizer.kind
    if kind not in TOKENIZER_FILES:
        raise ConfigError(f"config.tokenizer.kind={kind!r} is not one of {sorted(TOKENIZER_FILES)}")
    return kind


def training_texts(dataset, field: str) -> Callable[[], list[str]]:
    """() -> the texts of `field` ("captions" or "questions") in the training split."""

    def read() -> list[str]:
        train = dataset.source("train", images=False)
        if field == "captions":
            return [as_text(t) for record in train for t in record["captions"]]
        return [as_text(t) for record in train for t in record["questions"]["text"]]

    return read


def load_or_build_tokenizer(config, dataset, saved, field: str):
    """The tokenizer of config.tokenizer for the `field` texts of `dataset`.

    The one saved in `saved` (a Workdir, when resuming or predicting); else the one the dataset
    fixes (`Dataset.provided_tokenizer`); else one built from the training split with
    config.tokenizer's other keys as options.
    """
    kind = tokenizer_kind(config)
    if saved is not None and os.path.exists(saved.file(TOKENIZER_FILES[kind])):
        return saved.load_file(TOKENIZER_FILES[kind], load_tokenizer)
    provided = dataset.provided_tokenizer(kind, field)
    if provided is not None:
        return provided
    options = {k: v for k, v in config.tokenizer.items() if k != "kind"}
    return build_tokenizer(kind, training_texts(dataset, field)(), **options)


def answer_normalization(config, dataset) -> str:
    """The answer normalisation of the run: data.answer_normalization, "basic" or "vqa".

    By default "vqa" for data with several answers per question (`answers_per_question`).
    """
    chosen = config.data.get("answer_normalization", None)
    if chosen is None:
        return "vqa" if dataset.answers_per_question() > 1 else "basic"
    if chosen not in ("basic", "vqa"):
        raise ConfigError(f"data.answer_normalization={chosen!r} is not 'basic' or 'vqa'")
    return chosen


def training_answers(records):
    """Every answer of `records`, as text.

    Each human's answer ("answers") where a question has several, else its one "answer".
    """
    for record in records:
        questions = record["questions"]
        for i, answer in enumerate(questions["answer"]):
            several = questions["answers"][i] if "answers" in questions else None
            yield from (as_text(a) for a in several) if several else (as_text(answer),)


def load_or_build_answers(config, dataset, saved) -> AnswerVocabulary:
    """The VQA answer vocabulary, at most data.max_answers (0: all) answers.

    The one saved in `saved`; else the dataset's own (`Dataset.provided_answers`, most
    frequent first); else the most frequent training answers (`training_answers`). Answers are
    normalised by data.answer_normalization ("basic" by default, or "vqa").
    """
    if saved is not None and os.path.exists(saved.file(ANSWERS_FILE)):
        return saved.load_file(ANSWERS_FILE, AnswerVocabulary.load)
    limit = config.data.get("max_answers", 0)
    normalization = answer_normalization(config, dataset)
    provided = dataset.provided_answers()
    if provided is not None:
        vocabulary = AnswerVocabulary.from_answers(provided, normalization)
        return AnswerVocabulary(vocabulary.answers[: limit or None], normalization)
    train = dataset.source("train", images=False)
    try:
        return AnswerVocabulary.build(training_answers(train), limit, normalization=normalization)
    except ValueError:
        raise DataError(f"{dataset.name} train has no non-empty answers") from None
