r"""Image-text retrieval on Sort-of-CLEVR: a dual encoder trained with CLIP or SigLIP.

Image tower: a patch stem (or a conv stem, or a ResNet: model.stem) to image tokens, transformer
blocks, pooling; text tower: a transformer over the caption's words (learned positions),
pooling; both projected to one L2-normalised embedding space. Each step pairs every image with
one of its 5 captions (drawn from the step's rng) and contrasts it with the other images'
captions in the batch and with hard negatives made from its own caption.
Evaluation embeds the 200 test images and their 1,000 captions and scores Recall@1/5/10 in
both directions (image->text, text->image) next to a random ranking's.

Command:
  python -m mmjax.main --config=configs/retrieval_dual_encoder.py --workdir=runs/retrieval

Arguments (after a colon, comma-separated): size=tiny|default, steps=<int> (0 keeps the
size's default), num_train=<int>, num_test=<int>, loss=softmax|sigmoid,
dataset=sort_of_clevr|coco_captions|custom, data_dir=<path>, image_size=<int> (as in
configs/caption_transformer.py: other datasets' images are resized and centre-cropped to
image_size, the first 5 captions of each image are used, and evaluation is on coco_captions'
"val" or a custom dataset's "validation" split), init=<path>: start from trained weights, a
Hugging Face save_pretrained directory (CLIPModel, with its tokenizer.json; ViTModel), a
big_vision ViT .npz or another run's workdir; model.* takes their architecture, init_from loads
them, and a CLIP's text tower reads its own tokenizer (docs/weights.md). With
--config.total_steps=0 the run evaluates the weights as they are (zero-shot), training nothing.
hard=shapes_colors|shapes|cells|colors|all|none: the hard negatives (HARD_NEGATIVES below;
Sort-of-CLEVR only, and none with init=, whose tokenizer may split the words).

The default model: the patch stem of the VQA and captioning configs (5-pixel patches, each
embedded from the 15x15 window centred on it, the 64 patches farthest from the mean colour kept
as tokens), a text window, and hard negatives (hard=shapes_colors: each image's caption with
one shape word swapped, and with two colour words exchanged; mmjax/tasks/hard_negatives.py).
Results, what was tried on the validation split and the commands:
experiments/results/retrieval/README.md.
`size=tiny` exists for tests and trains for seconds.
"""

import ml_collections

from mmjax.config_utils import choose, parse_arg, set_training_defaults
from mmjax.data.catalog import data_config, evals_config
from mmjax.models.dual_encoder import CLIP_LOG_SCALE_INIT, SIGLIP_BIAS_INIT, SIGLIP_LOG_SCALE_INIT
from mmjax.projects.sort_of_clevr.dataset import data_entries
from mmjax.projects.sort_of_clevr.scenes import CAPTION_NAMES, CELLS, COLOR_NAMES
from mmjax.weights import start_from

ZERO_SHOT_TEMPLATES = (
    "a red square in the {}.",
    "a red circle in the {}.",
    "there is a red square at the {}.",
    "there is a red circle at the {}.",
)

SIZES = {
    "tiny": dict(width=32, depth=1, heads=2, mlp=64, embed=32, steps=20, batch=8),
    "default": dict(width=64, depth=1, heads=4, mlp=128, embed=64, steps=1200, batch=128),
}
# Hard negative groups (config.hard_negatives): word pairs swapped to make one negative caption
# per image and group. Sort-of-CLEVR's captions name shapes and grid cells with these words.
SHAPES, CELLS_MOVED, COLORS = "square:circle", "left:right,top:bottom", "|".join(COLOR_NAMES)
HARD_NEGATIVES = {
    "none": (),
    "shapes": (SHAPES,),  # one object's shape changed
    "cells": (CELLS_MOVED,),  # one object moved to the next cell
    "colors": (COLORS,),  # two objects' colours exchanged (or their order, left to right)
    "shapes_colors": (SHAPES, COLORS),
    "all": (SHAPES, CELLS_MOVED, COLORS),
}


def get_config(arg=None):
    """Returns the experiment config; `arg` holds typed key=value overrides."""
    arg = parse_arg(
        arg,
        size="default",
        steps=0,
        num_train=9800,
        num_test=200,
        loss="softmax",
        dataset="sort_of_clevr",
        data_dir="",
        image_size=75,
        init="",
        hard="shapes_colors",
    )
    size = choose("size", arg.size, SIZES)
    choose("loss", arg.loss, {"softmax": None, "sigmoid": None})
    hard = choose("hard", arg.hard, HARD_NEGATIVES)
    steps = arg.steps or size["steps"]

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "retrieval"

    sort_of_clevr = arg.dataset == "sort_of_clevr"
    sizes = data_entries(num_train=arg.num_train, num_test=arg.num_test) if sort_of_clevr else {}
    config.data = data_config(
        arg.dataset,
        arg.data_dir,
        arg.image_size,
        **sizes,
        max_caption_len=64,  # tokens, BOS and EOS included (the longest caption has 60 words)
        captions_per_image=5,
    )
    # A vocabulary of the training captions' words, saved in the workdir.
    config.tokenizer = dict(kind="word")

    config.loss = arg.loss  # "softmax" (CLIP) or "sigmoid" (SigLIP)
    # Only Sort-of-CLEVR's captions are known to use these words, as single word tokens.
    config.hard_negatives = hard if sort_of_clevr and not arg.init else ()
    sigmoid = arg.loss == "sigmoid"
    config.model = dict(
        # As in configs/vqa_transformer.py: 5-pixel patches, each embedded from the 15x15
        # window centred on it (a whole object); on Sort-of-CLEVR only the 64 patches farthest
        # from the image's mean colour (the objects') become tokens. Same stem, so a run here
        # can start the VQA or captioning model's stem. Other datasets: the conv stem.
        stem="patch" if sort_of_clevr else "conv",
        patch_size=5,
        patch_kernel=15 if sort_of_clevr else 0,
        keep_tokens=64 if sort_of_clevr else 0,
        token_selector="salient_patches" if sort_of_clevr else "",
        conv_channels=(16, 32, 64, 64),  # stem="conv": 75 -> 38 -> 19 -> 10 -> 5: 25 tokens
        resnet="resnet_small",
        posemb="sincos2d",
        width=size["width"],
        image_depth=size["depth"],
        text_depth=size["depth"],
        num_heads=size["heads"],
        mlp_dim=size["mlp"],
        embed_dim=size["embed"],
        image_pool="mean",
        text_pool="mean",
        # Each word token gets a convolution of the 9 tokens around it added: "a red square in
        # the top left" meet in one token, as an object's colour, shape and place meet in one
        # patch window of the image stem.
        text_window=9,
        dropout_rate=0.0,
        logit_scale_init=SIGLIP_LOG_SCALE_INIT if sigmoid else CLIP_LOG_SCALE_INIT,
        logit_bias_init=SIGLIP_BIAS_INIT,
        dtype="float32",
    )

    config.batch_size = size["batch"]  # images per step, each with one of its captions
    set_training_defaults(config, steps, lr=2e-3)
    if arg.init:
        start = start_from(arg.init, "dual_encoder")
        config.model.text_window = 0  # imported text towers have none; a workdir's says its own
        config.model.update(start["model"])
        config.init_from.update(path=arg.init, include=start["include"], exclude=start["exclude"])
        if start["tokenizer"]:
            config.tokenizer = start["tokenizer"]
            config.data.max_caption_len = start["max_caption_len"]

    # 95% bootstrap intervals over images of every Recall@K (docs/evaluation.md).
    evaluator = dict(type="retrieval", batch_size=50, ks=(1, 5, 10), bootstrap_samples=1000)
    if sort_of_clevr:  # Recall@K per caption wording too ("t2i_r1/left_to_right", ...)
        evaluator["caption_slots"] = CAPTION_NAMES
    config.evals = evals_config(arg.dataset, evaluator, every=max(1, steps // 5))
    if arg.dataset == "sort_of_clevr":
        # Recall@K by the scene's number of squares, at the end.
        config.evals.test_disparity = dict(
            type="disparity",
            base=dict(type="retrieval", ks=(1, 5, 10)),
            attributes=["squares"],
            bootstrap_samples=1000,
            split=config.evals.test.split,
            batch_size=50,
            every=0,
        )
        # Zero-shot: in which of the 3x3 cells is the red object? Never trained as a class:
        # each cell's name in four caption-like prompts (both shapes), ensembled.
        config.evals.zero_shot = dict(
            type="zero_shot",
            classes=CELLS,
            templates=ZERO_SHOT_TEMPLATES,
            label_key="object_cell",
            label_index=0,  # red: annotations order the objects by colour
            ks=(1, 3),
            split=config.evals.validation.split,
            batch_size=50,
            every=config.evals.validation.every,
        )
    return config
