r"""Multimodal autoencoder on Sort-of-CLEVR: image + text -> z -> image + text, cross-modal too.

The image enters as the VQA model's tokens (5-pixel patches, each embedded from the 15-pixel
window centred on it; the 64 patches farthest from the mean colour), the text through a text
encoder; a fusion transformer runs over [8 latent tokens; image; text], and z (`model.z_dim`)
is a linear map of the latents' fused states plus one of the valid image and text states (the
kept patches laid on the patch grid: pool="flatten"). A sprite decoder rebuilds the image: 6
sprites made from z, each placed by a distribution over rows and one over columns on a learned
background (`model.image_decoder_kind`: "sprites"; "patch" and "conv" are the others), and a
causal text decoder, cross-attending to `model.z_tokens` tokens made from z, writes the text.
The text T of a scene is its fourth caption ("from left to right: orange circle, gray circle,
..."), the one caption that the image determines (`data.caption_index`). Loss: w_image * pixel
MSE + w_text * token cross-entropy (`loss_weights`). Modality dropout (`model.image_only_rate`,
`model.text_only_rate`) makes z computable from either modality alone; `mask=<ratio>` turns on
masked autoencoding (that fraction of image tokens and text tokens hidden in training; then
every patch is a token).

Evaluation: image MSE and PSNR, text exact match and token accuracy, from z of image + text,
of the image alone and of the text alone (so image -> text and text -> image), CIDEr-D of the
text generated from the image alone, a PNG grid per evaluation in <workdir>/reconstructions/;
the share of objects whose colour the decoded image draws in the scene's left-to-right order
("drawn_order": a parser of the image, per source of z); and a 5-fold cross-validated linear
probe on z (shape, left, top of each colour's object) against the same probe on a
never-trained encoder of another seed, on validation and test. Images are decoded at their
mode (each sprite at its likeliest place), texts greedily.

Command:
  python -m mmjax.main --config=configs/autoencoder.py --workdir=runs/autoencoder

Arguments (after a colon, comma-separated): size=tiny|default, steps=<int> (0 keeps the
size's default), num_train=<int>, num_test=<int>, z_dim=<int> (0 keeps the size's default),
mask=<float> (masked-autoencoding ratio for image and text tokens, default 0).

Results (default size, this shared 2-core CPU): experiments/results/autoencoder/README.md;
how-to: docs/autoencoder.md.
"""

import ml_collections

from mmjax.config_utils import choose, parse_arg, require, set_training_defaults
from mmjax.data.catalog import data_config, evals_config
from mmjax.projects.sort_of_clevr.dataset import data_entries

SIZES = {
    "tiny": dict(
        width=32,
        z_dim=16,
        heads=2,
        mlp=64,
        text_depth=1,
        fusion_depth=1,
        decoder_depth=1,
        latents=2,
        z_tokens=2,
        decoder_channels=(16, 16),
        conv_channels=(16, 16, 16, 16),
        steps=20,
        batch=4,
    ),
    "default": dict(
        width=64,
        z_dim=128,
        heads=4,
        mlp=128,
        text_depth=1,
        fusion_depth=2,
        decoder_depth=2,
        latents=8,
        z_tokens=8,
        decoder_channels=(64, 64),
        conv_channels=(32, 64, 64, 64),
        steps=3000,
        batch=32,
    ),
}


def get_config(arg=None):
    """Returns the experiment config; `arg` holds typed key=value overrides."""
    arg = parse_arg(arg, size="default", steps=0, num_train=9800, num_test=1000, z_dim=0, mask=0.0)
    size = choose("size", arg.size, SIZES)
    require(0.0 <= arg.mask < 1.0, f"config argument mask={arg.mask} must lie in [0, 1)")
    steps = arg.steps or size["steps"]

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "autoencoding"

    config.data = data_config(
        "sort_of_clevr",
        "",
        75,
        **data_entries(num_train=arg.num_train, num_test=arg.num_test),
        # The fourth caption lists the objects left to right, so the image determines it; the
        # others list them in a random order. It is always 23 words: 25 tokens with BOS, EOS.
        caption_index=3,
        max_text_len=25,
    )
    config.tokenizer = dict(kind="word")  # built from the training captions, saved in workdir

    config.model = dict(
        # The VQA model's stem: 5-pixel patches, each embedded from the 15-pixel window centred
        # on it (the whole of an 11x11 object), and only the `keep_tokens` patches farthest from
        # the image's mean colour (the objects': at most 54 per scene).
        stem="patch",
        patch_size=5,
        patch_kernel=15,
        keep_tokens=0 if arg.mask else 64,  # masking hides patches of the whole grid
        token_selector="" if arg.mask else "salient_patches",
        conv_channels=size["conv_channels"],  # the "conv" stem's, when chosen
        posemb="sincos2d",
        width=size["width"],
        z_dim=arg.z_dim or size["z_dim"],
        num_heads=size["heads"],
        mlp_dim=size["mlp"],
        image_depth=0,
        text_depth=size["text_depth"],
        fusion_depth=size["fusion_depth"],
        num_latents=size["latents"],
        # z from the latents' fused states plus a linear map of the text's and of the kept
        # patches' states laid on the patch grid: image MSE 0.016 against 0.041 for the
        # latents alone after 800 image-only steps.
        pool="flatten",
        z_tokens=size["z_tokens"],
        text_decoder_depth=size["decoder_depth"],
        # Six sprites from z, each placed by a distribution over rows and one over columns on
        # a learned background ("patch": an MLP per 15x15 patch; "conv": transposed convs).
        image_decoder_kind="sprites",
        num_sprites=6,
        sprite_size=15,
        decoder_channels=size["decoder_channels"],  # the conv decoder's
        decoder_upsample=4,
        decoder_patch_size=15,  # the patch decoder's
        image_decoder_depth=1,
        image_start=1.0,  # the decoder starts from a white image, the background
        # Modality dropout: 35% image alone, 35% text alone (against 25% each, on validation:
        # image -> text exact match 14.5% against 7.0%, the probe 73.6% against 70.5%).
        image_only_rate=0.35,
        text_only_rate=0.35,
        image_mask_ratio=arg.mask,
        text_mask_ratio=arg.mask,
        dropout_rate=0.0,
        dtype="float32",
    )
    # Pixel MSE is ~0.05 for a blank white image and the token cross-entropy starts near 4.4.
    # Measured over 600 steps with the model before issue 26 (15-pixel patches, patch
    # decoder): with image weight 10 the text takes over the shared encoder and the image MSE
    # stays at the blank image's (0.048); 50 brings it to 0.033 with the text still learnt
    # (cross-entropy 0.10); 200 hurts the text (0.38). Kept for the sprite decoder.
    config.loss_weights = dict(image=50.0, text=1.0)
    config.probe_random_seed = 1  # the untrained encoder the probe is compared with

    config.batch_size = size["batch"]
    set_training_defaults(config, steps, lr=2e-3)

    evaluator = dict(
        type="reconstruction",
        batch_size=50 if arg.size == "default" else 4,
        grid_examples=8,
        grid_scale=2,
        # CIDEr-D etc. of the text generated from the image alone. These texts are lower-case
        # words and single punctuation marks, which the Python tokenizer splits as PTB does;
        # without Java, METEOR is left out (and its start-up, 10-20 s per evaluation here).
        java=False,
    )
    every = max(1, steps // 4)
    config.evals = evals_config("sort_of_clevr", evaluator, every=every)
    batch = 50 if arg.size == "default" else 4
    # Does the image decoded from z (of the text alone, above all) draw the scene's colours in
    # its left-to-right order? A parser of the drawn image (projects/sort_of_clevr/drawn_scenes).
    drawn = dict(type="drawn_order", batch_size=batch)
    config.evals.validation_drawn = dict(drawn, split="validation", every=every)
    config.evals.test_drawn = dict(drawn, split="test", every=0)
    # The probe runs once, after the last step (its predictions are the same; only the
    # representation is scored), on validation (to compare designs) and on test. Labels:
    # shape, left, top of each colour's object.
    probe = dict(
        type="linear_probe",
        batch_size=batch,
        every=0,
        label_key="probe_labels",
        groups={"shape": list(range(0, 6)), "left": list(range(6, 12)), "top": list(range(12, 18))},
        folds=5,
        l2s=(0.1, 1.0, 10.0, 100.0),
    )
    config.evals.validation_probe = dict(probe, split="validation")
    config.evals.probe = dict(probe, split="test")
    return config
