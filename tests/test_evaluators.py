import numpy as np
import pytest

from mmjax.evaluators import build_evaluator
from mmjax.evaluators.classification import macro_precision_recall_f1, sliced_accuracy


def _reference_macro(labels, predictions, num_classes):
    p, r, f = [], [], []
    for c in range(num_classes):
        tp = sum(1 for y, q in zip(labels, predictions) if y == c and q == c)
        pred = sum(1 for q in predictions if q == c)
        act = sum(1 for y in labels if y == c)
        if pred + act == 0:
            continue
        prec = tp / pred if pred else 0.0
        rec = tp / act if act else 0.0
        p.append(prec)
        r.append(rec)
        f.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return np.mean(p), np.mean(r), np.mean(f)


def test_macro_scores_match_a_direct_count():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 300)
    predictions = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 6, 300))
    predictions[predictions == 5] = 4  # class 5 is never predicted: recall 0 for it
    got = macro_precision_recall_f1(labels, predictions, num_classes=8)
    want = _reference_macro(labels.tolist(), predictions.tolist(), 8)
    assert got["precision"] == pytest.approx(want[0])
    assert got["recall"] == pytest.approx(want[1])
    assert got["f1"] == pytest.approx(want[2])


def test_sliced_accuracy_and_groups():
    labels = np.array([0, 1, 1, 2, 2, 2])
    preds = np.array([0, 0, 1, 2, 0, 2])
    slices = np.array([0, 0, 1, 1, 2, 2])
    got = sliced_accuracy(labels, preds, slices, ["a", "b", "c"], {"ab": [0, 1]})
    assert got == {"a": 0.5, "b": 1.0, "c": 0.5, "ab": 0.75}


def test_evaluator_ignores_padding_and_broadcasts_the_mask_over_questions():
    evaluator = build_evaluator(
        "test",
        dict(
            type="classification",
            split="test",
            batch_size=2,
            every=1,
            num_classes=3,
            label_key="answer",
            prediction_key="answer",
            slice_key="subtype",
            slice_names=["x", "y"],
            groups={"all": [0, 1]},
        ),
    )
    batch = {
        "answer": np.array([[0, 1], [2, 2]]),
        "subtype": np.array([[0, 1], [0, 1]]),
        "_mask": np.array([True, False]),
    }
    predicted = {"answer": np.array([[0, 0], [2, 2]])}
    metrics = evaluator.evaluate([(batch, predicted)])
    assert metrics["count"] == 2
    assert metrics["accuracy"] == 0.5
    assert metrics["accuracy/x"] == 1.0 and metrics["accuracy/y"] == 0.0


def test_unknown_evaluator_type_names_it():
    with pytest.raises(ValueError, match="evals.foo.type='nope'"):
        build_evaluator("foo", {"type": "nope"})
