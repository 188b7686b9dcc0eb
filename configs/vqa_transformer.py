r"""Multimodal transformer for visual question answering on Sort-of-CLEVR.

Each image is cut into 15x15 patches of 5 pixels, each embedded from the 15x15-pixel window
centred on it; only the 64 patches farthest from the image's mean colour become tokens (the
objects' patches: at most 54 per scene), with 2-D sin-cos positions. Each question enters as
one token, the mean of its word embeddings; the image tokens and the question tokens are fused
by self-attention (single stream), each question's attention to the image biased by the
tokens' distance from where one of its words points (a word pointer), and an MLP on the
question's token predicts one of 10 answers. Image tokens do not attend to text, so each
image is encoded once for its 20 questions (see MultimodalEncoder).

Command:
  python -m mmjax.main --config=configs/vqa_transformer.py --workdir=runs/vqa

Arguments (after a colon, comma-separated): size=tiny|small|default, steps=<int>
(0 keeps the size's default), and dataset sizes num_train=<int>, num_test=<int>;
dataset=sort_of_clevr|clevr|custom, data_dir=<path>, image_size=<int>.

Other datasets: `dataset=clevr` reads the TFDS catalog dataset (its question_answer pairs,
prepared in ArrayRecord format under data_dir; evaluated on "validation"), and
`dataset=custom,data_dir=DIR` one written by `python -m mmjax.data.prepare`. Their questions are
tokenized with a word vocabulary and their answers classified over an answer vocabulary, both
built from the training split; images are resized and centre-cropped to image_size; the first
10 questions of each image are used (data.questions_per_image). A custom dataset is also scored
with VQAv2 accuracy ("validation_vqa", "test_vqa"), and one whose lines give several answers
("answers": [...]) trains on their soft scores (docs/evaluation.md).

Results: mmjax/projects/sort_of_clevr/results/default_vqa/README.md (run files and tables);
the model and what was tried: docs/vqa.md, mmjax/projects/sort_of_clevr/NOTES.md.
`size=tiny` exists for tests and trains for seconds.
"""

import ml_collections

from mmjax.config_utils import choose, parse_arg, set_training_defaults
from mmjax.data.catalog import data_config, evals_config
from mmjax.projects.sort_of_clevr.dataset import data_entries
from mmjax.projects.sort_of_clevr.evals import answer_evals

SIZES = {
    "tiny": dict(width=32, depth=1, num_heads=2, mlp_dim=64, steps=20, batch=4),
    "small": dict(width=64, depth=3, num_heads=4, mlp_dim=128, steps=3000, batch=8),
    "default": dict(width=64, depth=3, num_heads=4, mlp_dim=128, steps=12000, batch=8),
}


def get_config(arg=None):
    """Returns the experiment config; `arg` holds typed key=value overrides."""
    arg = parse_arg(
        arg,
        size="default",
        steps=0,
        num_train=9800,
        num_test=200,
        dataset="sort_of_clevr",
        data_dir="",
        image_size=75,
    )
    choose("dataset", arg.dataset, {"sort_of_clevr": 0, "clevr": 0, "custom": 0})
    free_text = arg.dataset != "sort_of_clevr"
    size = choose("size", arg.size, SIZES)
    steps = arg.steps or size["steps"]

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "vqa"

    sizes = {} if free_text else data_entries(num_train=arg.num_train, num_test=arg.num_test)
    config.data = data_config(
        arg.dataset,
        arg.data_dir,
        arg.image_size,
        **sizes,
        # CLEVR's longest question has 43 words; Sort-of-CLEVR's 11.
        max_question_len=48 if free_text else 16,
        # One reader thread: with two, competing with XLA's for this CPU's two cores, the
        # pipeline delivered less (experiments/benchmark.py: 4.8x the step's demand in the
        # first epoch against 7-8x with one).
        num_threads=1,
    )
    if free_text:
        config.data.update(
            questions_per_image=10,  # CLEVR has 10 per image (a few have fewer)
            max_answers=1000,  # the most frequent training answers (CLEVR has 28)
            # Several human answers per question (VQAv2-style custom data): at most 10 kept;
            # None = soft targets and the VQA answer normalisation when the data has them.
            answers_per_question=10,
            soft_targets=None,
            answer_normalization=None,
        )
    # A word vocabulary of the questions (Sort-of-CLEVR fixes its own, from its templates;
    # others are built from the training questions), saved in the workdir.
    config.tokenizer = dict(kind="word")

    config.model = dict(
        stem="patch",
        patch_size=5,
        patch_kernel=15,  # each token sees a 15x15 window: the whole of an 11x11 object
        # Of the 15x15 patches, those of the objects (at most 54 per Sort-of-CLEVR scene).
        keep_tokens=0 if free_text else 64,
        # The patches farthest from the mean colour: the objects' on a plain background.
        token_selector="" if free_text else "salient_patches",
        conv_channels=(24, 24, 24, 24),
        stem_coords=False,
        width=size["width"],
        depth=size["depth"],
        num_heads=size["num_heads"],
        mlp_dim=size["mlp_dim"],
        dropout_rate=0.0,
        posemb="sincos2d",
        share_image=True,
        # The mean of the word embeddings, with no text block before it: the colour word then
        # adds the same term to the query of every question type, so a count question finds
        # its object as a shape question does (it beat a text block and the first token;
        # mmjax/projects/sort_of_clevr/NOTES.md).
        pool="mean",
        question_fusion="pooled",
        question_depth=0,
        condition_image="none",
        head_dim=None,
        # Each question's look-ups at the image are biased by the distance from where its colour
        # word points (WordPointer): relational questions need the distance to the object the
        # question names (results/default_vqa/README.md; without it, see NOTES.md).
        lookup_bias="pointer",
        dtype="float32",  # "bfloat16": bf16 compute; parameters and optimizer state stay f32
        remat=False,  # recompute each block's activations in the backward pass
        scan_layers=False,  # one compiled block scanned over depth (stacked parameters)
    )

    config.batch_size = size["batch"]  # images per step, each with its 20 questions
    set_training_defaults(config, steps, lr=1e-3)
    config.optim.b2 = 0.999
    config.log_every = max(1, min(250, steps // 60))
    config.checkpoint_every = max(1, steps // 10)

    # Validation every sixth of the run, test once at the end; num_classes comes from the
    # task (the answer vocabulary, plus "outside it").
    every = max(1, steps // 6)
    if free_text:
        evaluator = dict(
            type="classification",
            batch_size=50,
            label_key="answer",
            prediction_key="answer",
            bootstrap_samples=1000,  # 95% intervals over images
        )
        config.evals = evals_config(arg.dataset, evaluator, every)
        if arg.dataset == "custom":  # VQAv2 accuracy against every human answer, per type
            vqa = dict(type="vqa_accuracy", batch_size=50, bootstrap_samples=1000)
            config.evals.update(
                {f"{k}_vqa": v for k, v in evals_config(arg.dataset, vqa, every).items()}
            )
    else:
        config.evals = answer_evals(batch_size=50, every=every)
    return config


def get_sweep(arg=None):
    r"""The example sweep: each learning rate with each fusion depth, ranked by validation accuracy.

      python -m experiments.sweep --config=configs/vqa_transformer.py:size=small \
          --workdir=runs/sweep --parallel=2

    `arg` (--sweep_arg) holds '/'-separated values, `lr=3e-4/1e-3/3e-3,depth=2/3` by default:
    3 x 2 = 6 trials, overriding config.optim.lr and config.model.depth, each in
    runs/sweep/<name> with names like `lr=0.001,depth=3`. `--sweep_arg=lr=1e-3/3e-3,depth=2`
    is 2 trials; `seeds=0/1/2` also repeats every trial with each config.seed (no seed axis by
    default). No sweep results are recorded here yet.
    """
    from mmjax import sweeps  # only sweeps need it, not get_config

    arg = parse_arg(arg, lr="3e-4/1e-3/3e-3", depth="2/3", seeds="")
    axes = {
        "optim.lr": sweeps.split_values(arg.lr, float),
        "model.depth": sweeps.split_values(arg.depth, int),
    }
    if arg.seeds:
        axes["seed"] = sweeps.split_values(arg.seeds, int)
    return sweeps.product(**axes)
