"""Baselines of Sort-of-CLEVR VQA that never look at the image."""

from __future__ import annotations

import numpy as np

from mmjax.projects.sort_of_clevr import scenes

NON_RELATIONAL = ("shape", "left", "top")
RELATIONAL = ("closest", "furthest", "count")


def question_only_baseline(train_records, test_records) -> dict[str, float]:
    """Accuracy on test of answering each (color, subtype) with its most frequent train answer.

    This is the best any model that ignores the image can do, up to sampling noise.
    """
    counts = np.zeros((6, len(scenes.SUBTYPES), len(scenes.ANSWERS)), np.int64)
    for record in train_records:
        q = record["questions"]
        np.add.at(counts, (q["color"], q["subtype"], q["answer"]), 1)
    majority = counts.argmax(-1)
    hits = {name: [] for name in scenes.SUBTYPES}
    for record in test_records:
        q = record["questions"]
        correct = majority[q["color"], q["subtype"]] == q["answer"]
        for subtype, ok in zip(q["subtype"], correct, strict=True):
            hits[scenes.SUBTYPES[subtype]].append(ok)
    result = {name: float(np.mean(v)) if v else float("nan") for name, v in hits.items()}
    result["non_relational"] = float(np.mean(sum((hits[n] for n in NON_RELATIONAL), [])))
    result["relational"] = float(np.mean(sum((hits[n] for n in RELATIONAL), [])))
    result["overall"] = float(np.mean(sum(hits.values(), [])))
    return result
