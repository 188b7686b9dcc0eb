r"""Image captioning on Sort-of-CLEVR: an image encoder and a transformer decoder.

A patch stem (or a conv stem, or a ResNet: model.stem, model.resnet) turns the image into
tokens, `encoder_depth` transformer blocks encode them, and a causal decoder with
cross-attention writes the caption, trained with teacher forcing on all 5 reference captions
of each image (the image is encoded once for them). Evaluation decodes with the KV cache
(config.decoding: greedy, beam or sample) and scores BLEU-1..4, METEOR, ROUGE-L and CIDEr-D
against the 5 references; the final table compares them with always answering the most
frequent training caption.

Command:
  python -m mmjax.main --config=configs/caption_transformer.py --workdir=runs/caption

Arguments (after a colon, comma-separated): size=tiny|default, steps=<int> (0 keeps the
size's default), num_train=<int>, num_test=<int>, stem=patch|conv|resnet (default: patch on
Sort-of-CLEVR, conv on the other datasets), tokenizer=word|sentencepiece,
dataset=sort_of_clevr|coco_captions|custom, data_dir=<path> (the TFDS root, or a custom
dataset's directory), image_size=<int>, init=<path>: start the image encoder from trained
weights, a Hugging Face save_pretrained directory (CLIPModel, ViTModel), a big_vision ViT .npz
or another run's workdir (its image tower); model.* takes that tower's architecture and
init_from loads its parameters (docs/weights.md).

Other datasets: `dataset=coco_captions` reads the TFDS catalog dataset (prepared in ArrayRecord
format under data_dir; evaluated on Karpathy's "val" split), `dataset=custom,data_dir=DIR` one
written by `python -m mmjax.data.prepare` (evaluated on its "validation" split); images are
resized and centre-cropped to image_size, and the first 5 captions of each image are used.

Results: mmjax/projects/sort_of_clevr/results/default_captioning/README.md (run files and
tables); the task: docs/captioning.md.
"""

import ml_collections

from mmjax.config_utils import choose, parse_arg, set_training_defaults
from mmjax.data.catalog import data_config, evals_config
from mmjax.projects.sort_of_clevr.dataset import data_entries
from mmjax.weights import start_from

SIZES = {
    "tiny": dict(width=32, enc=1, dec=1, heads=2, mlp=64, steps=20, batch=4, resnet="resnet_tiny"),
    "default": dict(
        width=128, enc=1, dec=2, heads=4, mlp=256, steps=3000, batch=8, resnet="resnet_small"
    ),
}


def get_config(arg=None):
    """Returns the experiment config; `arg` holds typed key=value overrides."""
    arg = parse_arg(
        arg,
        size="default",
        steps=0,
        num_train=9800,
        num_test=200,
        stem="",
        tokenizer="word",
        dataset="sort_of_clevr",
        data_dir="",
        image_size=75,
        init="",
    )
    size = choose("size", arg.size, SIZES)
    steps = arg.steps or size["steps"]
    sort_of_clevr = arg.dataset == "sort_of_clevr"
    stem = arg.stem or ("patch" if sort_of_clevr else "conv")

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "captioning"

    sizes = data_entries(num_train=arg.num_train, num_test=arg.num_test) if sort_of_clevr else {}
    config.data = data_config(
        arg.dataset,
        arg.data_dir,
        arg.image_size,
        **sizes,
        max_caption_len=64,  # tokens, BOS and EOS included (the longest caption has 60 words)
        caption_text_bytes=320,  # reference text kept as bytes for the metrics
        captions_per_image=5,  # the first 5 of each image's captions (Sort-of-CLEVR has 5)
    )
    # "word": a vocabulary of the training captions' words; "sentencepiece": a SentencePiece
    # model trained on them (options: vocab_size, model_type). Saved in the workdir.
    config.tokenizer = dict(kind=arg.tokenizer)
    if arg.tokenizer == "sentencepiece":
        config.tokenizer.update(vocab_size=256, model_type="bpe")

    config.model = dict(
        stem=stem,
        # The patch stem as in the VQA config: 5-pixel patches, each embedded from the 15-pixel
        # window centred on it, and on Sort-of-CLEVR only the 64 patches farthest from the
        # image's mean colour (the objects'). With the conv stem's 25 coarse tokens the captions
        # named shapes at chance: the objects must be seen at patch resolution
        # (mmjax/projects/sort_of_clevr/NOTES.md).
        patch_size=5,
        patch_kernel=15,
        keep_tokens=64 if sort_of_clevr and stem == "patch" else 0,
        token_selector="salient_patches" if sort_of_clevr else "",
        conv_channels=(32, 64, 64, 64),  # 75 -> 38 -> 19 -> 10 -> 5: 25 image tokens
        resnet=size["resnet"],
        posemb="sincos2d",
        width=size["width"],
        encoder_depth=size["enc"],
        decoder_depth=size["dec"],
        num_heads=size["heads"],
        mlp_dim=size["mlp"],
        dropout_rate=0.0,
        dtype="float32",
    )
    config.label_smoothing = 0.0
    config.decoding = dict(
        method="greedy",  # "greedy", "beam" or "sample"
        beam_size=4,
        length_penalty=0.6,
        temperature=1.0,
        top_k=0,  # 0: no top-k truncation
        use_cache=True,
    )

    config.batch_size = size["batch"]  # images per step, each with its 5 captions
    set_training_defaults(config, steps, lr=1e-3)
    if arg.init:
        start = start_from(arg.init, "captioner")
        config.model.update(start["model"])
        config.init_from.update(path=arg.init, include=start["include"], exclude=start["exclude"])

    # 95% bootstrap intervals over images for BLEU, ROUGE-L and CIDEr-D (docs/evaluation.md).
    evaluator = dict(
        type="captioning", batch_size=50, reference_key="references", bootstrap_samples=1000
    )
    config.evals = evals_config(arg.dataset, evaluator, every=max(1, steps // 3))
    if sort_of_clevr:
        # Does the caption name each object's shape and place? (Sort-of-CLEVR scenes only.)
        config.evals.objects = dict(type="scene_caption", split="test", batch_size=50, every=0)
        # ROUGE-L and CIDEr-D by the scene's number of squares, at the end.
        config.evals.test_disparity = dict(
            type="disparity",
            base=dict(type="captioning", reference_key="references"),
            attributes=["squares"],
            bootstrap_samples=1000,
            split=config.evals.test.split,
            batch_size=50,
            every=0,
        )
    return config
