"""The parser of drawn Sort-of-CLEVR images: it recovers the order of the generator's own scenes,
finds what is wrong in altered ones, and the "drawn_order" evaluator counts right objects."""

import numpy as np

from mmjax.evaluators import build_evaluator
from mmjax.projects.sort_of_clevr import scenes
from mmjax.projects.sort_of_clevr.dataset import object_annotations
from mmjax.projects.sort_of_clevr.drawn_scenes import colour_centroids, order_verdicts


def _scenes(count, seed=0):
    rng = np.random.default_rng(seed)
    return [scenes.generate_scene(rng) for _ in range(count)]


def test_the_generators_scenes_parse_to_their_objects_and_order():
    for scene in _scenes(200):
        centres = object_annotations(scene["objects"], 75)["object_center"]
        found = colour_centroids(scene["image"])
        # Centroids of whole shapes are their centres; shapes that touch lose a pixel row.
        np.testing.assert_allclose(found, centres, atol=0.6)
        assert order_verdicts(found[:, 0], centres[:, 0]).all()
        # The caption the autoencoder reads names the colours in the same order.
        caption = scene["captions"][3].split(": ", 1)[1]
        named = [phrase.split()[0] for phrase in caption.rstrip(".").split(", ")]
        by_parser = [scenes.COLOR_NAMES[c] for c in np.argsort(found[:, 0], kind="stable")]
        ties = len(set(centres[:, 0])) < 6
        assert ties or by_parser == named


def test_a_swap_of_two_colours_makes_exactly_those_two_wrong():
    scene = next(s for s in _scenes(20, seed=1) if len(set(s["objects"]["center"][:, 0])) == 6)
    objects = {k: np.array(v) for k, v in scene["objects"].items()}
    red, blue = (int(np.flatnonzero(objects["color"] == c)[0]) for c in (0, 2))
    objects["color"][[red, blue]] = objects["color"][[blue, red]]
    swapped = scenes.draw(objects)
    true_x = object_annotations(scene["objects"], 75)["object_center"][:, 0]
    verdicts = order_verdicts(colour_centroids(swapped)[:, 0], true_x)
    assert list(verdicts) == [False, True, False, True, True, True]


def test_faint_blank_and_float_images():
    scene = _scenes(1, seed=2)[0]
    true_x = object_annotations(scene["objects"], 75)["object_center"][:, 0]
    image = scene["image"].astype(np.float32) / 255.0
    assert order_verdicts(colour_centroids(image)[:, 0], true_x).all()
    # Half-way to the white background is no colour: nothing is drawn.
    faint = colour_centroids(0.5 * image + 0.5)
    assert np.isnan(faint).all() and not order_verdicts(faint[:, 0], true_x).any()
    assert np.isnan(colour_centroids(np.ones((75, 75, 3)))).all()
    # A missing colour is wrong and shifts those right of it; the rest keep their ranks.
    found = colour_centroids(image)[:, 0]
    leftmost = int(np.argmin(true_x))
    found[leftmost] = np.nan
    verdicts = order_verdicts(found, true_x)
    assert not verdicts.any()


def test_evaluator_scores_real_rows_per_source():
    chosen = _scenes(4, seed=3)
    images = np.stack([s["image"] for s in chosen])
    centres = np.stack([object_annotations(s["objects"], 75)["object_center"] for s in chosen])
    batch = {"object_center": centres, "_mask": np.array([1, 1, 1, 0], bool)}
    blank = np.ones(images.shape, np.float32)
    mixed = np.concatenate([images[:1], blank[1:]]).astype(np.float32) / 255.0
    mixed[1:] = 1.0
    predicted = {"image_joint": images, "image_from_text": mixed}
    spec = {"type": "drawn_order", "sources": ["joint", "from_text"]}
    metrics = build_evaluator("order", spec, {}).evaluate([(batch, predicted)])
    assert metrics["num_examples"] == 3
    assert metrics["joint_objects_in_order"] == 1 and metrics["joint_scenes_in_order"] == 1
    assert metrics["from_text_objects_in_order"] == metrics["from_text_colours_drawn"] == 1 / 3
