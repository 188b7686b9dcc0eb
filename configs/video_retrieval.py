r"""Video-text retrieval on bouncing shapes: a dual encoder with a ViViT video tower.

Video tower: the "vivit" stem (tubelets of 2 frames x 8x8 pixels, 4 x 8 x 8 = 256 tokens of
a 64x64, 8-frame clip; `mmjax.models.video.ViViT`), then kind=joint: `image_depth` blocks of
joint space-time attention over all tokens (ViViT model 1), or kind=factorised: a spatial
block per time step and a temporal block over the 4 frame tokens (model 2); mean pooling.
Text tower: a transformer over the caption's words, mean pooling. Both projected to one
L2-normalised space and trained with the CLIP (softmax) or SigLIP (sigmoid) loss; each step
pairs every clip with one of its 5 captions (5 wordings, objects in random order but the
first). Evaluation embeds the validation or test clips and all their captions and scores
Recall@1/5/10 both ways next to a random ranking's.

The captions name every object's colour, shape, starting direction and bounces; clips share
colours and shapes, so a caption is told from another mostly by the motion it names.

Command:
  python -m mmjax.main --config=configs/video_retrieval.py --workdir=runs/video_retrieval

Arguments (after a colon, comma-separated): size=tiny|default, steps=<int> (0: the size's
default), kind=joint|factorised, tubelet=<frames per tubelet>, loss=softmax|sigmoid,
num_train=<int>, num_validation=<int>, num_test=<int>, data_dir=<path> (the TFDS root).

Results: mmjax/projects/bouncing_shapes/results/video_retrieval/README.md.
"""

import ml_collections

from mmjax.config_utils import choose, parse_arg, set_training_defaults
from mmjax.data.catalog import data_config, evals_config
from mmjax.models.dual_encoder import CLIP_LOG_SCALE_INIT, SIGLIP_BIAS_INIT, SIGLIP_LOG_SCALE_INIT
from mmjax.projects.bouncing_shapes.dataset import data_entries

SIZES = {
    "tiny": dict(width=32, depth=1, heads=2, mlp=64, embed=32, steps=20, batch=8, patch=16),
    "default": dict(width=64, depth=1, heads=4, mlp=128, embed=64, steps=1000, batch=64, patch=8),
}
KINDS = {"joint": None, "factorised": None}


def get_config(arg=None):
    """Returns the experiment config; `arg` holds typed key=value overrides."""
    arg = parse_arg(
        arg,
        size="default",
        steps=0,
        kind="joint",
        tubelet=2,
        loss="softmax",
        num_train=8000,
        num_validation=500,
        num_test=500,
        data_dir="",
    )
    size = choose("size", arg.size, SIZES)
    choose("kind", arg.kind, KINDS)
    choose("loss", arg.loss, {"softmax": None, "sigmoid": None})
    steps = arg.steps or size["steps"]

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "retrieval"
    sizes = data_entries(
        num_train=arg.num_train, num_validation=arg.num_validation, num_test=arg.num_test
    )
    config.data = data_config(
        "bouncing_shapes",
        arg.data_dir,
        64,
        **sizes,
        max_caption_len=72,  # tokens, BOS and EOS included (the longest caption has 66)
        captions_per_image=5,
    )
    config.tokenizer = dict(kind="word")  # the dataset's template vocabulary
    config.loss = arg.loss

    if arg.kind == "joint":
        video, image_depth = dict(kind="joint", tubelet=arg.tubelet), size["depth"]
    else:
        depth = size["depth"]
        video = dict(
            kind="factorised", tubelet=arg.tubelet, spatial_depth=depth, temporal_depth=depth
        )
        image_depth = 0
    sigmoid = arg.loss == "sigmoid"
    config.model = dict(
        stem="vivit",
        video=video,
        patch_size=size["patch"],
        width=size["width"],
        image_depth=image_depth,
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
    config.batch_size = size["batch"]  # clips per step, each with one of its captions
    set_training_defaults(config, steps, lr=2e-3)

    # 95% bootstrap intervals over clips of every Recall@K (docs/evaluation.md).
    evaluator = dict(type="retrieval", batch_size=50, ks=(1, 5, 10), bootstrap_samples=1000)
    config.evals = evals_config("bouncing_shapes", evaluator, every=max(1, steps // 5))
    return config
