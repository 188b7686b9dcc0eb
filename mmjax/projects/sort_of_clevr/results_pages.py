"""The `figures.md` page of a default run's results folder, and its learning curves.

The page is written by `results_figures` from the committed metrics.jsonl and what the
checkpoint's figures measured, so its numbers are never typed by hand.
"""

from __future__ import annotations

import os

from mmjax.plot.panels import curves_figure
from mmjax.projects.sort_of_clevr import results_curves
from mmjax.projects.sort_of_clevr.scenes import NUM_QUESTIONS
from mmjax.workdir import read_metrics

COMMAND = "python -m mmjax.projects.sort_of_clevr.results_figures --runs=/tmp/mmjax_figures"
TRAIN = {
    "vqa": "configs/vqa_transformer.py",
    "captioning": "configs/caption_transformer.py",
    "retrieval": "configs/retrieval_dual_encoder.py",
    "autoencoding": "configs/autoencoder.py",
}
TEST_METRICS = {
    "vqa": [
        (f"accuracy/{k}", k, 100)
        for k in (
            "shape",
            "left",
            "top",
            "closest",
            "furthest",
            "count",
            "non_relational",
            "relational",
        )
    ],
    "captioning": [(k, k, 1) for k in ("bleu_1", "bleu_4", "meteor", "rouge_l", "cider_d")],
    "retrieval": [(f"{d}_r{k}", f"{d} R@{k}", 100) for d in ("i2t", "t2i") for k in (1, 5, 10)],
    "autoencoding": [
        (f"image_{s}_mse", f"image MSE, z of {s}", 1) for s in ("joint", "from_image", "from_text")
    ]
    + [
        (f"text_{s}_exact_match", f"text exact match, z of {s}", 100)
        for s in ("joint", "from_image", "from_text")
    ],
}
FIGURES = {
    "vqa": [
        (
            "attention.png",
            "Attention rollout from the answer to the image tokens, for four "
            "question types on three test scenes (rows); the title gives the question, the "
            "model's answer and its probability. White ring: the object the question names; "
            "cyan ring: the object a closest/furthest question asks about.",
        ),
        (
            "attention_heads.png",
            "One question in detail: the scene upscaled, the rollout per "
            "token cell with its colour bar, the same over the scene, and below, each fusion "
            "layer's and head's attention from the question's token to the image tokens.",
        ),
    ],
    "captioning": [
        (
            "caption_attention.png",
            "The decoder's cross-attention to the image "
            "tokens while it wrote each word of its caption of test scene 0 (mean over "
            "heads and layers; one colour scale).",
        )
    ],
    "retrieval": [
        (
            "relevance.png",
            "Each image token's share of a caption's cosine "
            "similarity to test scene 0 (the shares sum to the similarity): two of the "
            "scene's own captions and one caption each of test scenes 1 and 2, most "
            "similar first.",
        )
    ],
    "autoencoding": [
        (
            "reconstructions.png",
            "Three test scenes and their texts, reconstructed "
            "from z of the image alone, of the text alone and of both; the title "
            "gives each image's MSE against the input, the decoded text is under it.",
        )
    ],
}


def records(folder: str) -> list[dict]:
    """The metrics records of the run whose files were copied into `folder`."""
    return read_metrics(os.path.join(folder, "metrics.jsonl"))


def curves(task: str, metrics: list[dict], dataset, folder: str) -> str:
    """`curves.png` of the task (see `results_curves`); returns its path."""
    if task == "vqa":
        _, baseline = dataset.answer_baseline("validation")
        panels = results_curves.vqa_panels(baseline)
    else:
        panels = getattr(results_curves, f"{task}_panels")()
    title = f"default {task} run on Sort-of-CLEVR ({TRAIN[task]})"
    return curves_figure(metrics, panels, os.path.join(folder, "curves.png"), title)


def _test_table(task: str, metrics: list[dict]) -> list[str]:
    final = {k: v for r in metrics for k, v in r.items() if k.startswith("test/")}
    lines = ["| test metric | value |", "| --- | --- |"]
    for key, name, scale in TEST_METRICS[task]:
        value = final.get(f"test/{key}")
        shown = (
            "n/a"
            if value is None
            else (f"{value * scale:.1f}%" if scale == 100 else f"{value:.3f}")
        )
        lines.append(f"| {name} | {shown} |")
    return lines


def _facts(task: str, facts) -> list[str]:
    if task == "vqa":
        scenes, hits = facts
        lines = [
            "How often the rollout's brightest token cell lies on the object the question "
            f"names, over the {NUM_QUESTIONS * scenes:,} questions of the first {scenes} test "
            "scenes (chance: the share of the image tokens that lie on that object, where a token "
            "drawn at random would land):",
            "",
            "| question type | on the named object | on it or the object asked about | chance |",
            "| --- | --- | --- | --- |",
        ]
        for name, h in hits.items():
            lines.append(
                f"| {name} | {100 * h['asked']:.1f}% | "
                f"{100 * h['asked_or_referent']:.1f}% | {100 * h['chance']:.1f}% |"
            )
        return lines
    if task == "captioning":
        lines = [
            "Captions of the first test scenes (greedy decoding) and a reference:",
            "",
            "| scene | model | a reference |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {s} | {c} | {r} |" for s, c, r in facts]
        return lines
    return []


def write_page(
    task: str, folder: str, metrics: list[dict], step: int, facts, kept: bool = False
) -> str:
    """Writes `folder`/figures.md: command, test metrics, figures and the numbers behind them.

    `kept`: the folder's run files are an earlier run's that the new run matched (they were
    kept, `results_figures.copy_run_files`); the page says so.
    """
    same = (
        " The run files here are those of an earlier run of the same config (its data_dir "
        "aside), kept because this run logged the same metrics at every step."
        if kept
        else ""
    )
    lines = [
        f"# Figures of the default {task} run",
        "",
        f"Trained with `python -m mmjax.main --config={TRAIN[task]} --workdir=/tmp/mmjax_figures/"
        f"{task}` (this folder's `config.json` and `metrics.jsonl`; figures from the checkpoint "
        f"of step {step}, which is not committed).{same} This page and its figures are written by",
        "",
        "```bash",
        COMMAND,
        "```",
        "",
        *_test_table(task, metrics),
        "",
        "![learning curves](curves.png)",
        "",
        "Learning curves from `metrics.jsonl`: the training loss (smoothed, raw curve faint), "
        "the validation metrics during training and the test score at the end (a star).",
        "",
    ]
    for name, caption in FIGURES[task]:
        lines += [f"![{name}]({name})", "", caption, ""]
    lines += _facts(task, facts)
    path = os.path.join(folder, "figures.md")
    with open(path, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    return path
