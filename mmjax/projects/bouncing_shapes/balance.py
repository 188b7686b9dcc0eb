r"""The answer balance of a built bouncing-shapes dataset and its question-only baseline.

    python -m mmjax.projects.bouncing_shapes.balance --data_dir=~/tensorflow_datasets \
      --output=mmjax/projects/bouncing_shapes/results/dataset/balance.json

Writes, for the default build (or the one its --num_* flags name): each family's answer counts
on the training split and the share of its most frequent answer, and the question-only
baseline's accuracy (`baselines.question_only_baseline`, fitted on train) on validation and
test.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter

from mmjax.projects.bouncing_shapes import questions
from mmjax.projects.bouncing_shapes.baselines import question_only_baseline
from mmjax.projects.bouncing_shapes.dataset import common_record
from mmjax.projects.bouncing_shapes.tfds_builder import DEFAULT, SETTINGS, load_bouncing_shapes


def answer_counts(records) -> dict[str, dict[str, int]]:
    """{family: {answer: count}} over `records` (common layout)."""
    counts = {f: Counter() for f in questions.QUESTION_FAMILIES}
    for record in records:
        q = record["questions"]
        for family, answer in zip(q["family"], q["answer"]):
            counts[questions.QUESTION_FAMILIES[family]][answer] += 1
    return {f: dict(sorted(c.items())) for f, c in counts.items()}


def main(argv=None) -> dict:
    """Measures the balance of the build the flags name; writes and returns the report."""
    parser = argparse.ArgumentParser(description="Answer balance of bouncing_shapes.")
    parser.add_argument("--data_dir", default="~/tensorflow_datasets")
    parser.add_argument("--output", required=True)
    for key in SETTINGS:
        parser.add_argument(f"--{key}", type=int, default=DEFAULT[key])
    args = vars(parser.parse_args(argv))
    data_dir, output = args.pop("data_dir"), args.pop("output")

    def split(name):
        source = load_bouncing_shapes(data_dir, name, **args)
        return [common_record(source[i], i) for i in range(len(source))]

    train, validation, test = split("train"), split("validation"), split("test")
    counts = answer_counts(train)
    report = {
        "settings": args,
        "train_answer_counts": counts,
        "train_majority_share": {
            f: max(c.values()) / sum(c.values()) for f, c in counts.items() if c
        },
        "question_only": {
            "validation": question_only_baseline(train, validation),
            "test": question_only_baseline(train, test),
        },
    }
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report["question_only"]["validation"]))
    return report


if __name__ == "__main__":
    main()
