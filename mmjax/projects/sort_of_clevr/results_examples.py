"""Example figures of the default Sort-of-CLEVR runs, drawn from their checkpoints.

Each function takes a loaded run (`mmjax.predict.Predictor`) and the test split, writes PNG
files into `out_dir` and returns what the results page says about them. Scenes are the first
test scenes, so the figures are the same at every run of the command.
"""

from __future__ import annotations

import os

import numpy as np

from mmjax.interpret.attention import vqa_attention
from mmjax.interpret.figures import (
    Example,
    HeatCell,
    heat_grid_figure,
    reconstruction_figure,
    retrieval_figure,
    vqa_figure,
)
from mmjax.projects.sort_of_clevr import scenes

SHOWN = ("shape", "closest", "furthest", "count")  # the question types of the attention grid


def referent(objects, color: int, subtype: str) -> int | None:
    """The object a closest/furthest question is about (index by colour), else None."""
    if subtype not in ("closest", "furthest"):
        return None
    centers = np.asarray(objects["center"], np.float64)
    asked = list(objects["color"]).index(color)
    distance = np.linalg.norm(centers - centers[asked], axis=-1)
    distance[asked] = np.nan
    return int(np.nanargmin(distance) if subtype == "closest" else np.nanargmax(distance))


def _markers(objects, color: int, subtype: str) -> list[tuple[float, float, str]]:
    """A white ring on the asked object; a cyan one on a closest/furthest question's answer."""
    asked = list(objects["color"]).index(color)
    x, y = objects["center"][asked]
    marks = [(float(x), float(y), "wo")]
    other = referent(objects, color, subtype)
    if other is not None:
        x, y = objects["center"][other]
        marks.append((float(x), float(y), "co"))
    return marks


def _title(text: str, answer, truth: str) -> str:
    mark = "correct" if answer.text == truth else f"wrong, truth {truth}"
    return f"{text}\n-> {answer.text} (p = {answer.probability:.2f}, {mark})"


def vqa_examples(predictor, test, out_dir: str, scene_ids=(0, 1, 2)) -> list[str]:
    """attention.png: scenes x question types; attention_heads.png: one question per head."""
    rows = []
    for s in scene_ids:
        scene, row = test[s], []
        questions = scene["questions"]
        for name in SHOWN:
            q = int(np.flatnonzero(questions["subtype"] == scenes.SUBTYPES.index(name))[0])
            text = questions["text"][q].decode()
            answer = predictor.answer(scene["image"], text)
            maps = predictor.attention(scene["image"], text)
            color = int(questions["color"][q])
            row.append(
                HeatCell(
                    scene["image"],
                    maps.relevance[0, 0],
                    maps.grid,
                    _title(text, answer, str(questions["answer"][q])),
                    _markers(scene["objects"], color, name),
                )
            )
        rows.append(row)
    title = (
        "Where the answer comes from: attention rollout from the answer to the image tokens "
        "(white ring: the object the question names; cyan: the object a closest/furthest "
        "question asks about)"
    )
    grid = heat_grid_figure(
        rows, "share of the answer", title=title, row_labels=[f"test scene {s}" for s in scene_ids]
    )
    paths = [grid.save(os.path.join(out_dir, "attention.png"))]
    scene = test[scene_ids[0]]
    text = scene["questions"]["text"][np.flatnonzero(scene["questions"]["subtype"] == 4)[0]]
    text = text.decode()
    answer = predictor.answer(scene["image"], text)
    maps = predictor.attention(scene["image"], text)
    heads = vqa_figure(scene["image"], maps, text, answer.text, answer.probability, per_head=True)
    paths.append(heads.save(os.path.join(out_dir, "attention_heads.png")))
    return paths


def object_cells(center, grid: tuple[int, int], image_size: int) -> set[int]:
    """The grid cells (row-major) that an object's 11 x 11 box around `center` (x, y) overlaps."""
    cell = image_size / grid[0]
    x, y = center
    lo = lambda v: int((v - scenes.HALF_SIZE) // cell)  # noqa: E731
    hi = lambda v: int((v + scenes.HALF_SIZE) // cell)  # noqa: E731
    return {r * grid[1] + c for r in range(lo(y), hi(y) + 1) for c in range(lo(x), hi(x) + 1)}


def pointing(predictor, test, num_scenes: int, batch: int = 25) -> dict[str, dict[str, float]]:
    """How often the rollout's brightest cell lies on the object the question names, by type.

    Per question subtype: "asked" (on the named object), "asked_or_referent" (on it or, for
    closest/furthest, on the object it asks about) and "chance" (the share of the image tokens
    that lie on the named object: a random token's hit rate), over `num_scenes` test scenes.
    """
    hits = {name: {"asked": [], "asked_or_referent": [], "chance": []} for name in scenes.SUBTYPES}
    size = int(predictor.run.config.data.image_size)
    for start in range(0, num_scenes, batch):
        records = [test[i] for i in range(start, min(start + batch, num_scenes))]
        examples = [predictor.task.preprocess(r) for r in records]
        images = np.stack([e["image"] for e in examples])
        questions = np.stack([e["question"] for e in examples])
        maps = vqa_attention(predictor.task.model, predictor.params, images, questions)
        for b, record in enumerate(records):
            objects, qs = record["objects"], record["questions"]
            tokens = set(np.flatnonzero(maps.cells[b]))
            for q, (color, subtype) in enumerate(zip(qs["color"], qs["subtype"])):
                name = scenes.SUBTYPES[subtype]
                top = int(np.argmax(maps.relevance[b, q]))
                asked = list(objects["color"]).index(color)
                cells = object_cells(objects["center"][asked], maps.grid, size)
                other = referent(objects, int(color), name)
                near = cells | (
                    object_cells(objects["center"][other], maps.grid, size)
                    if other is not None
                    else set()
                )
                hits[name]["asked"].append(top in cells)
                hits[name]["asked_or_referent"].append(top in near)
                hits[name]["chance"].append(len(cells & tokens) / len(tokens))
    return {n: {k: float(np.mean(v)) for k, v in h.items()} for n, h in hits.items()}


def captioning_examples(predictor, test, out_dir: str, scene_ids=(0, 1, 2, 3)):
    """caption_attention.png (the first scene's words); returns (scene, caption, reference)."""
    from mmjax.predict import figures

    drawn = figures.attention(predictor, test[scene_ids[0]]["image"])
    path = drawn.canvas.save(os.path.join(out_dir, "caption_attention.png"))
    captions = [
        (s, predictor.caption(test[s]["image"]).text, test[s]["captions"][0].decode())
        for s in scene_ids
    ]
    return [path], captions


def retrieval_examples(predictor, test, out_dir: str, scene: int = 0, others=(1, 2)):
    """relevance.png: two of the scene's captions and one of each other scene's."""
    captions = [c.decode() for c in test[scene]["captions"][:2]]
    captions += [test[o]["captions"][0].decode() for o in others]
    rel = predictor.relevance(test[scene]["image"], captions)
    canvas = retrieval_figure(
        test[scene]["image"], captions, rel.similarity[0], rel.maps[0], rel.grid, kind=rel.kind
    )
    return [canvas.save(os.path.join(out_dir, "relevance.png"))]


def autoencoding_examples(predictor, test, out_dir: str, scene_ids=(0, 1, 2)):
    """reconstructions.png: each scene and its text, reconstructed from every source of z."""
    examples = []
    for s in scene_ids:
        image = test[s]["image"]
        text = test[s]["captions"][predictor.task.caption_index].decode()
        results = predictor.reconstructions(image, text)
        examples.append(Example(image, text, {k: (r.image, r.text) for k, r in results.items()}))
    canvas = reconstruction_figure(examples, scale=3)
    return [canvas.save(os.path.join(out_dir, "reconstructions.png"))]
