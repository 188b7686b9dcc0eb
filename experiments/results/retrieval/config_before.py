r"""Image-text retrieval on Sort-of-CLEVR: a dual encoder trained with CLIP or SigLIP.

Image tower: a conv stem (or ViT patches, or a ResNet: model.stem) to 25 tokens, transformer
blocks, pooling; text tower: a transformer over the caption's words, pooling; both projected to
one L2-normalised embedding space. Each step pairs every image with one of its 5 captions
(drawn from the step's rng) and contrasts it with the other images' captions in the batch.
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

Results (default size: conv stem 16-32-64-64 to 25 tokens, width 64, one block per tower,
mean pooling, 64-d embeddings, 147k parameters; batch 64, lr 2e-3, 1000 steps = 6.5 epochs;
softmax loss). One run on this shared 2-core CPU: 12 min wall (1.5-2.1 steps/s, other jobs
loading the machine; 6.3 min of CPU time). Test Recall@K (%), 200 images x 5 captions:

  direction      R@1   R@5   R@10   (chance R@1 / R@5 / R@10: 0.5 / 2.5 / 5.0)
  image->text   51.5  85.5   96.5
  text->image   44.5  78.1   81.0

Per caption template, text->image R@1 is 55-56% (R@10 100%) for the four templates that name
each object's grid cell, and 0.5% (chance) for "from left to right: red square, ...", which
names only shapes and their order: the towers match colours to grid cells (a caption with one
object's cell changed scores lower than the true one for 98.5% of test images) but have not
learned shapes (54% for a caption with one shape changed), and random batches rarely hold two
scenes that differ only in shapes. Shorter runs (600 steps, i2t / t2i R@1): lr 1e-3 37.5 / 32.8
(with MAP pooling on both towers 38.5 / 32.0); lr 2e-3 45.5 / 36.1 (loss=sigmoid 34.5 / 29.9).
"""

import ml_collections

from mmjax.config_utils import choose, parse_arg, set_training_defaults
from mmjax.data.catalog import data_config, evals_config
from mmjax.models.dual_encoder import CLIP_LOG_SCALE_INIT, SIGLIP_BIAS_INIT, SIGLIP_LOG_SCALE_INIT
from mmjax.projects.sort_of_clevr.dataset import data_entries
from mmjax.projects.sort_of_clevr.scenes import CELLS
from mmjax.weights import start_from

ZERO_SHOT_TEMPLATES = (
    "a red square in the {}.",
    "a red circle in the {}.",
    "there is a red square at the {}.",
    "there is a red circle at the {}.",
)

SIZES = {
    "tiny": dict(width=32, depth=1, heads=2, mlp=64, embed=32, steps=20, batch=8),
    "default": dict(width=64, depth=1, heads=4, mlp=128, embed=64, steps=1000, batch=64),
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
    )
    size = choose("size", arg.size, SIZES)
    choose("loss", arg.loss, {"softmax": None, "sigmoid": None})
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
    sigmoid = arg.loss == "sigmoid"
    config.model = dict(
        stem="conv",
        patch_size=5,
        # The patch stem's window and token selection (see configs/caption_transformer.py);
        # set to those of another task's stem, a run here can start that task's model.
        patch_kernel=0,
        keep_tokens=0,
        token_selector="",
        conv_channels=(16, 32, 64, 64),  # 75 -> 38 -> 19 -> 10 -> 5: 25 image tokens
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
        dropout_rate=0.0,
        logit_scale_init=SIGLIP_LOG_SCALE_INIT if sigmoid else CLIP_LOG_SCALE_INIT,
        logit_bias_init=SIGLIP_BIAS_INIT,
        dtype="float32",
    )

    config.batch_size = size["batch"]  # images per step, each with one of its captions
    set_training_defaults(config, steps, lr=2e-3)
    if arg.init:
        start = start_from(arg.init, "dual_encoder")
        config.model.update(start["model"])
        config.init_from.update(path=arg.init, include=start["include"], exclude=start["exclude"])
        if start["tokenizer"]:
            config.tokenizer = start["tokenizer"]
            config.data.max_caption_len = start["max_caption_len"]

    # 95% bootstrap intervals over images of every Recall@K (docs/evaluation.md).
    evaluator = dict(type="retrieval", batch_size=50, ks=(1, 5, 10), bootstrap_samples=1000)
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
