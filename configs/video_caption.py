r"""Video captioning on bouncing shapes: a ViViT encoder and a transformer decoder.

The clip (8 frames of 64x64) is cut into tubelets of 2 frames x 8x8 pixels (4 x 8 x 8 = 256
tokens) by the "vivit" stem (`mmjax.models.video.ViViT`); kind=joint (ViViT model 1) runs
`encoder_depth` blocks of joint space-time attention over all 256 tokens, kind=factorised
(model 2) a spatial block per time step and a temporal block over the 4 frame tokens. A causal
decoder with cross-attention writes the caption that says how each object moves and bounces,
trained with teacher forcing on the clip's canonical caption (captions=1, objects in colour
order; captions=5 adds the four other wordings, whose object order is random). Evaluation
decodes greedily and scores BLEU, ROUGE-L and CIDEr-D against the same references, and the
motion check of the dataset (evaluator "motion_caption": is each object's starting direction
named right?), which no single frame can get right more often than chance allows.

Command:
  python -m mmjax.main --config=configs/video_caption.py --workdir=runs/video_caption

Arguments (after a colon, comma-separated): size=tiny|default, steps=<int> (0: the size's
default), kind=joint|factorised, tubelet=<frames per tubelet>, captions=1|5, num_train=<int>,
num_validation=<int>, num_test=<int>, data_dir=<path> (the TFDS root), init=<path>: start the
video encoder from an image captioner's workdir (its patch stem and blocks; the patch kernel
inflated by init_inflate=average|central, the spatial position embeddings reused, the temporal
ones at zero; docs/video.md).

Results: mmjax/projects/bouncing_shapes/results/video_caption/README.md.
"""

import ml_collections

from mmjax.config_utils import choose, parse_arg, set_training_defaults
from mmjax.data.catalog import data_config, evals_config
from mmjax.projects.bouncing_shapes.dataset import data_entries

SIZES = {
    "tiny": dict(width=32, enc=1, dec=1, heads=2, mlp=64, steps=20, batch=4, patch=16),
    "default": dict(width=96, enc=1, dec=2, heads=4, mlp=192, steps=2000, batch=16, patch=8),
}
KINDS = {"joint": None, "factorised": None}
MOTION_MODULE = "mmjax.projects.bouncing_shapes.caption_motion"


def video_encoder(kind: str, tubelet: int, depth: int) -> tuple[dict, int]:
    """(model.video, encoder_depth) for a ViViT of `kind` with `depth` blocks.

    joint: the captioner's own `depth` blocks attend over all tokens (the stem embeds them);
    factorised: the stem runs `depth` spatial and `depth` temporal blocks, and the captioner
    none.
    """
    if kind == "joint":
        return dict(kind="joint", tubelet=tubelet), depth
    options = dict(kind="factorised", tubelet=tubelet, spatial_depth=depth, temporal_depth=depth)
    return options, 0


def get_config(arg=None):
    """Returns the experiment config; `arg` holds typed key=value overrides."""
    arg = parse_arg(
        arg,
        size="default",
        steps=0,
        kind="joint",
        tubelet=2,
        captions=1,
        num_train=8000,
        num_validation=500,
        num_test=500,
        data_dir="",
        init="",
        init_inflate="average",
    )
    size = choose("size", arg.size, SIZES)
    choose("kind", arg.kind, KINDS)
    choose("captions", arg.captions, {1: None, 5: None})
    choose("init_inflate", arg.init_inflate, {"average": None, "central": None})
    steps = arg.steps or size["steps"]

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "captioning"
    config.imports = [MOTION_MODULE]
    sizes = data_entries(
        num_train=arg.num_train, num_validation=arg.num_validation, num_test=arg.num_test
    )
    config.data = data_config(
        "bouncing_shapes",
        arg.data_dir,
        64,
        **sizes,
        max_caption_len=72,  # tokens, BOS and EOS included (the longest caption has 66)
        caption_text_bytes=384,  # reference text kept as bytes (the longest caption has 309)
        captions_per_image=arg.captions,
    )
    config.tokenizer = dict(kind="word")  # the dataset's template vocabulary

    video, encoder_depth = video_encoder(arg.kind, arg.tubelet, size["enc"])
    config.model = dict(
        stem="vivit",
        video=video,
        patch_size=size["patch"],
        width=size["width"],
        encoder_depth=encoder_depth,
        decoder_depth=size["dec"],
        num_heads=size["heads"],
        mlp_dim=size["mlp"],
        dropout_rate=0.0,
        dtype="float32",
    )
    config.label_smoothing = 0.0
    config.decoding = dict(
        method="greedy", beam_size=4, length_penalty=0.6, temperature=1.0, top_k=0, use_cache=True
    )
    config.batch_size = size["batch"]  # clips per step, each with its captions
    set_training_defaults(config, steps, lr=1e-3)
    if arg.init:
        config.init_from.update(path=arg.init, **image_init(arg.kind))
        config.init_from.inflate = arg.init_inflate

    every = max(1, steps // 4)
    evaluator = dict(
        type="captioning", batch_size=50, reference_key="references", bootstrap_samples=1000
    )
    config.evals = evals_config("bouncing_shapes", evaluator, every=every)
    motion = dict(type="motion_caption", batch_size=50, bootstrap_samples=1000)
    config.evals.validation_motion = dict(motion, split="validation", every=every)
    config.evals.test_motion = dict(motion, split="test", every=0)
    return config


def image_init(kind: str) -> dict:
    """init_from's include, exclude and rename to start a ViViT captioner from an image one.

    The image run's patch stem (kernel inflated, spatial position table) and its encoder
    blocks: the joint encoder's as they are, the factorised one's spatial blocks renamed from
    them. The temporal position table (and factorised temporal blocks) keep their init.
    """
    if kind == "joint":
        return dict(include="^(stem|image_encoder)/", exclude="temporal_embedding")
    return dict(
        include="^stem/(embedding|posemb|spatial)/",
        exclude="temporal_embedding",
        rename=(("^image_encoder/", "stem/spatial/"),),
    )
