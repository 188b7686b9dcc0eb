"""The answer vocabulary of open-ended VQA: answer text <-> class id, built from training answers.

Answers are normalised before counting and lookup: "basic" (stripped, lowercased, inner
whitespace collapsed), so "Yes" and "yes " are one class, or "vqa", the official VQA
normalisation (`mmjax.data.vqa_normalize`: punctuation, articles, number words to digits,
contractions), so "Two." and "2" are one class, as VQAv2 accuracy compares them. Classes are
sorted by descending training count, then alphabetically, so a build is deterministic. An
answer outside the vocabulary maps to `unknown_id` == len(vocabulary): the model has no logit
for it, so such a question is never answered right, as in the VQA benchmarks'
fixed-vocabulary setting.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterable

from mmjax.data.vqa_normalize import normalize_vqa_answer


def normalize_answer(text: str) -> str:
    """Lowercased `text` with surrounding whitespace removed and inner runs collapsed."""
    return " ".join(text.lower().split())


NORMALIZATIONS = {"basic": normalize_answer, "vqa": normalize_vqa_answer}


def normalizer(name: str):
    """The normalisation function `name` ("basic" or "vqa"); ValueError for another name."""
    if name not in NORMALIZATIONS:
        raise ValueError(f"answer normalization {name!r} is not one of {sorted(NORMALIZATIONS)}")
    return NORMALIZATIONS[name]


class AnswerVocabulary:
    """Maps normalised answer text to class ids 0..N-1, and any other text to N.

    Attributes:
      answers: the N answers; an answer's id is its position.
      normalization: "basic" or "vqa" (see the module docstring).
    """

    def __init__(self, answers: list[str], normalization: str = "basic"):
        if not answers:
            raise ValueError("an answer vocabulary needs at least one answer")
        if len(set(answers)) != len(answers):
            raise ValueError("answer vocabulary has duplicate answers")
        self.normalize = normalizer(normalization)
        self.normalization = normalization
        self.answers = list(answers)
        self._ids = {answer: i for i, answer in enumerate(self.answers)}

    @classmethod
    def from_answers(cls, answers: Iterable[str], normalization: str = "basic"):
        """The answers in their order, normalised, the repeats that normalisation makes dropped."""
        normalize = normalizer(normalization)
        kept = dict.fromkeys(a for a in (normalize(x) for x in answers) if a)
        return cls(list(kept), normalization)

    @classmethod
    def build(
        cls,
        answers: Iterable[str],
        max_size: int = 0,
        min_count: int = 1,
        normalization: str = "basic",
    ) -> AnswerVocabulary:
        """The answers seen at least `min_count` times, the `max_size` most frequent (0: all)."""
        normalize = normalizer(normalization)
        counts = collections.Counter(normalize(a) for a in answers)
        counts.pop("", None)
        kept = [a for a, n in counts.items() if n >= min_count]
        kept.sort(key=lambda a: (-counts[a], a))
        return cls(kept[:max_size] if max_size else kept, normalization)

    def __len__(self) -> int:
        return len(self.answers)

    @property
    def unknown_id(self) -> int:
        """The id of every answer outside the vocabulary: len(self)."""
        return len(self.answers)

    def id(self, answer: str) -> int:
        """The class id of `answer` after normalisation; `unknown_id` when it is not known."""
        return self._ids.get(self.normalize(answer), self.unknown_id)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the answers to `path` as JSON."""
        with open(path, "w") as f:
            json.dump({"answers": self.answers, "normalization": self.normalization}, f, indent=0)

    @classmethod
    def load(cls, path: str | os.PathLike) -> AnswerVocabulary:
        """Reads a vocabulary written by `save`; raises FileNotFoundError naming `path`."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"no answer vocabulary at {os.fspath(path)}")
        with open(path) as f:
            saved = json.load(f)
        # Files written before normalisations were named used the basic one.
        return cls(saved["answers"], saved.get("normalization", "basic"))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AnswerVocabulary)
            and self.answers == other.answers
            and self.normalization == other.normalization
        )

    def __repr__(self) -> str:
        return f"AnswerVocabulary({len(self)} answers)"
