"""Object-level caption scoring: every reference caption of a generated scene scores perfectly,
and a wrong shape or place is caught."""

import numpy as np

from mmjax.data.tokenizer import WordTokenizer
from mmjax.projects.sort_of_clevr import scenes as sort_of_clevr
from mmjax.projects.sort_of_clevr.scene_captions import SceneCaptionEvaluator, scene_caption_scores


def _scene(seed):
    scene = sort_of_clevr.generate_scene(np.random.default_rng(seed))
    objects = scene["objects"]
    order = np.argsort(objects["color"])
    shapes, centers = objects["shape"][order], objects["center"][order]
    positions = [sort_of_clevr.position_phrase(int(x), int(y)) for x, y in centers]
    return scene, shapes, centers, positions


def test_reference_captions_name_every_object_right():
    for seed in range(5):
        scene, shapes, _, positions = _scene(seed)
        for caption in scene["captions"]:
            caption = caption.decode() if isinstance(caption, bytes) else caption
            scores = scene_caption_scores(caption.replace(",", " ").rstrip("."), shapes, positions)
            assert all(scores["mentioned"]) and all(scores["shape"]), caption
            assert all(p in (True, None) for p in scores["position"]), caption
            if not caption.startswith("from left to right"):
                assert None not in scores["position"], caption


def test_wrong_shape_wrong_place_and_missing_objects_are_counted():
    shapes = np.array([0, 1, 0, 1, 0, 1])  # red square, green circle, ...
    positions = ["top left", "center", "bottom right", "top center", "middle left", "center"]
    text = "a red circle in the top left and a green circle at the bottom left"
    scores = scene_caption_scores(text, shapes, positions)
    assert scores["mentioned"] == [True, True, False, False, False, False]
    assert scores["shape"] == [False, True, False, False, False, False]
    assert scores["position"] == [True, False, None, None, None, None]


def test_evaluator_decodes_tokens_and_skips_padding():
    scene, shapes, centers, _ = _scene(7)
    caption = scene["captions"][0]
    caption = caption.decode() if isinstance(caption, bytes) else caption
    tokenizer = WordTokenizer.build([caption, "a purple triangle"])
    tokens = np.stack([tokenizer.encode(caption, 80), tokenizer.encode("a purple triangle", 80)])
    batch = {
        "object_shape": np.stack([shapes, shapes]),
        "object_center": np.stack([centers, centers]),
        "_mask": np.array([True, False]),  # the second row is padding: not scored
    }
    scores = SceneCaptionEvaluator(tokenizer).evaluate([(batch, {"tokens": tokens})])
    assert scores["objects_all_correct"] == 1.0 and scores["objects_mentioned"] == 1.0
    batch["_mask"] = np.array([True, True])
    scores = SceneCaptionEvaluator(tokenizer).evaluate([(batch, {"tokens": tokens})])
    assert scores["objects_mentioned"] == 0.5
