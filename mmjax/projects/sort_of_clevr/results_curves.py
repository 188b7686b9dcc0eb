"""The learning-curve panels of the default Sort-of-CLEVR runs, one figure per task.

Each figure: the training loss (smoothed; raw curve faint behind it), and the validation
metrics the task is judged by against training steps, with the test score (scored once, at the
end) as a star; for VQA the question-only baseline as dashed lines.
"""

from __future__ import annotations

from mmjax.plot.panels import Curve, Panel

LOSS = Panel("training loss", "loss", [Curve("train/loss", "train")], log_y=True, smoothing=0.3)


def vqa_panels(baseline: dict[str, float]) -> list[Panel]:
    """Loss; non-relational and relational accuracy; the relational subtypes (percent)."""
    kinds = [("non_relational", "non-relational"), ("relational", "relational")]
    accuracy = [
        Curve(f"validation/accuracy/{k}", f"{label}, validation", 100) for k, label in kinds
    ]
    accuracy += [
        Curve(f"test/accuracy/{k}", f"{label}, test", 100, color=i)
        for i, (k, label) in enumerate(kinds)
    ]
    references = [(100 * baseline[k], f"question-only, {label}, validation") for k, label in kinds]
    subtypes = [Curve(f"validation/accuracy/{k}", k, 100) for k in ("closest", "furthest", "count")]
    return [
        LOSS,
        Panel("accuracy by question type", "accuracy (%)", accuracy, references),
        Panel("relational questions, validation", "accuracy (%)", subtypes),
    ]


def captioning_panels() -> list[Panel]:
    """Loss; CIDEr-D; BLEU-4 and METEOR."""
    return [
        LOSS,
        Panel(
            "CIDEr-D",
            "CIDEr-D",
            [
                Curve("validation/cider_d", "validation"),
                Curve("test/cider_d", "test", color=0),
            ],
        ),
        Panel(
            "BLEU-4 and METEOR",
            "score",
            [
                Curve("validation/bleu_4", "BLEU-4, validation"),
                Curve("validation/meteor", "METEOR, validation"),
            ],
        ),
    ]


def retrieval_panels() -> list[Panel]:
    """Loss; Recall@1 both ways; Recall@5 both ways (percent)."""

    def recall(k):
        directions = (("i2t", "image -> text"), ("t2i", "text -> image"))
        curves = [
            Curve(f"{split}/{d}_r{k}", f"{name}, {split}", 100, color=i)
            for split in ("validation", "test")
            for i, (d, name) in enumerate(directions)
        ]
        return Panel(f"Recall@{k}", "recall (%)", curves)

    return [LOSS, recall(1), recall(5)]


def autoencoding_panels() -> list[Panel]:
    """Loss; image MSE by source of z; text exact match by source of z."""
    sources = (("joint", "image + text"), ("from_image", "image"), ("from_text", "text"))
    mse = [Curve(f"validation/image_{s}_mse", f"z of {name}") for s, name in sources]
    exact = [Curve(f"validation/text_{s}_exact_match", f"z of {name}", 100) for s, name in sources]
    return [
        LOSS,
        Panel("image MSE, validation", "MSE", mse, log_y=True),
        Panel("text exact match, validation", "exact match (%)", exact),
    ]
