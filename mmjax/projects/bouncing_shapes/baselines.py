"""Baselines of bouncing-shapes video QA that never look at the clip."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from mmjax.projects.bouncing_shapes.questions import (
    MOTION_FAMILIES,
    QUESTION_FAMILIES,
    STATIC_FAMILIES,
)


def question_only_baseline(train_records, test_records) -> dict[str, float]:
    """Accuracy of answering each question text with its most frequent training answer.

    The majority is counted on `train_records` (ties: the alphabetically first; a text never
    seen: its family's majority) and scored on `test_records`.

    Records are in the common layout ("questions": "text", "answer" str, "family" int).
    Returns accuracy "overall", per family, and over the "motion" and "static" families: the
    best a model that ignores the clip can do, up to sampling noise.
    """
    by_text: dict[str, Counter] = defaultdict(Counter)
    by_family: dict[int, Counter] = defaultdict(Counter)
    for record in train_records:
        q = record["questions"]
        for text, answer, family in zip(q["text"], q["answer"], q["family"]):
            by_text[text][answer] += 1
            by_family[int(family)][answer] += 1

    def majority(counts: Counter) -> str:
        return min(counts, key=lambda a: (-counts[a], a)) if counts else ""

    hits: dict[str, list[bool]] = {name: [] for name in QUESTION_FAMILIES}
    for record in test_records:
        q = record["questions"]
        for text, answer, family in zip(q["text"], q["answer"], q["family"]):
            guess = majority(by_text.get(text) or by_family[int(family)])
            hits[QUESTION_FAMILIES[int(family)]].append(guess == answer)

    def mean(names) -> float:
        values = [v for n in names for v in hits[n]]
        return float(np.mean(values)) if values else float("nan")

    result = {name: mean([name]) for name in QUESTION_FAMILIES}
    result.update(motion=mean(MOTION_FAMILIES), static=mean(STATIC_FAMILIES))
    result["overall"] = mean(QUESTION_FAMILIES)
    return result
