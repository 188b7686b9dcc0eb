"""The zero-shot evaluator against accuracies worked out by hand, and its Sort-of-CLEVR labels."""

import numpy as np
import pytest

from mmjax.evaluators import build_evaluator
from mmjax.evaluators.zero_shot import class_embeddings, prompts
from mmjax.projects.sort_of_clevr import scenes
from mmjax.projects.sort_of_clevr.dataset import object_annotations

CLASSES = ("red", "green", "blue")
TEMPLATES = ("a {} thing", "the {} one")

# Prompt embeddings chosen so that each class's two prompts, once normalised and averaged,
# point along one axis: red -> x, green -> y, blue -> z. Without normalising each prompt
# first, red's mean would be (4, 2, 0), not along x.
PROMPT_EMBEDDINGS = {
    "a red thing": [3.0, 3.0, 0.0],
    "the red one": [1.0, -1.0, 0.0],
    "a green thing": [0.0, 2.0, 2.0],
    "the green one": [0.0, 1.0, -1.0],
    "a blue thing": [5.0, 0.0, 5.0],
    "the blue one": [-1.0, 0.0, 1.0],
}


def _embedder(params, texts):
    assert params == "params"
    return np.array([PROMPT_EMBEDDINGS[t] for t in texts], np.float32)


def _evaluator(**kwargs):
    config = dict(type="zero_shot", classes=CLASSES, templates=TEMPLATES, label_key="label")
    return build_evaluator("zs", {**config, **kwargs}, {"text_embedder": _embedder})


def test_prompts_are_class_major_and_ensembles_are_normalised():
    assert prompts(CLASSES, TEMPLATES)[:3] == ["a red thing", "the red one", "a green thing"]
    text = np.array([PROMPT_EMBEDDINGS[p] for p in prompts(CLASSES, TEMPLATES)])
    np.testing.assert_allclose(class_embeddings(text, 3), np.eye(3), atol=1e-12)
    with pytest.raises(ValueError, match="no {}"):
        prompts(CLASSES, ["a thing"])


def test_top_k_accuracy_by_hand():
    evaluator = _evaluator(ks=(1, 2, 3, 5))
    evaluator.use_params("params")
    # Scores are cosines to the axes x (red), y (green), z (blue).
    images = np.array(
        [
            [0.9, 0.1, 0.0],  # red, scored first: right at top-1
            [0.5, 0.6, 0.1],  # red, second behind green: right at top-2
            [0.2, 0.3, 0.1],  # blue, last: right only at top-3
            [0.5, 0.5, 0.0],  # red tied with green: counts as second (pessimistic)
            [0.0, 0.0, 1.0],  # padding (_mask False): left out
            [0.0, 1.0, 0.0],  # no label (-1): left out
        ]
    )
    batch = {"label": np.array([0, 0, 2, 0, 1, -1]), "_mask": np.array([1, 1, 1, 1, 0, 1])}
    # A second batch, the same images all labelled green: ranks 1 (red 0.9 above), 0, 0,
    # 1 (tied with red), 2 (blue 1.0 above, red 0.0 tied) and 0.
    green = {"label": np.ones(6, int), "_mask": np.ones(6)}
    pairs = [(batch, {"image_embedding": images}), (green, {"image_embedding": images})]
    metrics = evaluator.evaluate(pairs)
    assert metrics["num_examples"] == 4 + 6
    assert metrics["top1"] == pytest.approx((1 + 3) / 10)
    assert metrics["top2"] == pytest.approx((3 + 5) / 10)
    assert metrics["top3"] == pytest.approx(1.0)
    assert "top5" not in metrics  # more than the three classes
    assert metrics["chance_top1"] == pytest.approx(1 / 3)


def test_label_columns_and_bad_labels():
    evaluator = _evaluator(label_index=1)
    evaluator.use_params("params")
    images = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    labels = np.array([[0, 2], [0, 1]])  # column 1: blue (right), green (wrong)
    metrics = evaluator.evaluate(
        [({"label": labels, "_mask": np.ones(2)}, {"image_embedding": images})]
    )
    assert metrics["top1"] == 0.5
    with pytest.raises(ValueError, match="outside the 3 classes"):
        evaluator.evaluate(
            [({"label": np.array([[0, 3]]), "_mask": np.ones(1)}, {"image_embedding": images[:1]})]
        )


def test_sort_of_clevr_cells_are_the_ones_captions_name():
    for x in range(0, 75, 4):
        for y in range(0, 75, 4):
            assert scenes.CELLS[scenes.cell_index(x, y)] == scenes.position_phrase(x, y)
    objects = {
        "color": np.array([1, 0, 2, 3, 4, 5]),
        "shape": np.zeros(6, int),
        "center": np.array([[70, 70], [5, 5], [37, 37], [5, 70], [70, 5], [30, 60]]),
    }
    cells = object_annotations(objects, 75)["object_cell"]
    assert [scenes.CELLS[c] for c in cells] == [
        "top left",  # red (colour 0) at (5, 5)
        "bottom right",  # green at (70, 70)
        "center",
        "bottom left",
        "top right",
        "bottom center",
    ]
