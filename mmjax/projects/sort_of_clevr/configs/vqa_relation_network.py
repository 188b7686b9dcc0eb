r"""Relation Network, CNN+MLP and question-only models on Sort-of-CLEVR (Santoro et al. 2017).

The models of the paper as kimhc6028/relational-networks builds them (mmjax/models/relation.py):
four 3x3 stride-2 convs of 24 channels to a 5x5 grid of objects; the RN's g is 4 x 256 over
all 625 ordered object pairs with the 11-number question code, summed; f is 256, 256, dropout
0.5, 10. CNN+MLP: the flattened grid and the code through 256, 256, dropout, 10. Adam at a
constant learning rate of 2.5e-4 (the paper's; kimhc6028 uses 1e-4), no weight decay, no
clipping.

Command:
  python -m mmjax.main \
      --config=mmjax/projects/sort_of_clevr/configs/vqa_relation_network.py:model=relation_network \
      --workdir=runs/rn

Arguments (after a colon, comma-separated): model=relation_network|cnn_mlp|question_only,
size=tiny|default, epochs=<float> (0: the model's default, 20 for the RN and 100 for CNN+MLP
as in kimhc6028, 2 for question_only), steps=<int> (overrides epochs), g_width=<int> (0: 256),
lr=<float>, evals_per_epoch=<int>, num_train=<int>, num_test=<int>. `size=tiny` trains for
seconds, for tests.

Differences from the paper, whatever the arguments: GroupNorm (8 groups) instead of
BatchNorm, since the trainer keeps no batch statistics; a batch is 4 images x their 20
questions (80 questions from 4 scenes) instead of 64 questions from 64 scenes, since each
image is encoded once for all of its questions. One epoch (9,800 images) is 2,450 steps.

Results: mmjax/projects/sort_of_clevr/results/relation_networks/README.md, written by
`python -m mmjax.projects.sort_of_clevr.reproduce_relation_networks` (which runs this config
for every model). On this 2-core CPU, shared with other jobs, an RN step takes 5.35 s at
g_width=256 (3.6 hours an epoch) and 0.85 s at g_width=64, so the paper's 20 epochs at width
256 are out of reach here; the reproduction states the width and epochs of each run.
"""

import math

import ml_collections

from mmjax.config_utils import choose, parse_arg
from mmjax.data.catalog import data_config
from mmjax.projects.sort_of_clevr.dataset import data_entries
from mmjax.projects.sort_of_clevr.evals import answer_evals

IMAGES_PER_BATCH = 4  # x 20 questions = 80 questions per step
SIZES = {
    "tiny": dict(channels=(8, 8, 8, 8), norm_groups=4, g_width=32, g_depth=2, f_widths=(32, 32)),
    "default": dict(
        channels=(24, 24, 24, 24), norm_groups=8, g_width=256, g_depth=4, f_widths=(256, 256)
    ),
}
DEFAULT_EPOCHS = {"relation_network": 20.0, "cnn_mlp": 100.0, "question_only": 2.0}


def get_config(arg=None):
    """Returns the experiment config; `arg` holds typed key=value overrides."""
    arg = parse_arg(
        arg,
        model="relation_network",
        size="default",
        epochs=0.0,
        steps=0,
        g_width=0,
        lr=2.5e-4,
        evals_per_epoch=1,
        num_train=9800,
        num_test=200,
    )
    size = choose("size", arg.size, SIZES)
    epochs = arg.epochs or choose("model", arg.model, DEFAULT_EPOCHS)
    tiny = arg.size == "tiny"
    batch = 2 if tiny else IMAGES_PER_BATCH
    steps_per_epoch = math.ceil(arg.num_train / batch)
    # size=tiny trains 20 steps unless given epochs or steps.
    steps = arg.steps or (20 if tiny and not arg.epochs else math.ceil(epochs * steps_per_epoch))

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "vqa"

    config.data = data_config(
        "sort_of_clevr",
        "",
        75,
        **data_entries(num_train=arg.num_train, num_test=arg.num_test),
        max_question_len=16,
    )
    config.tokenizer = dict(kind="word")  # the template tokenizer the dataset fixes

    model = dict(name=arg.model, f_widths=size["f_widths"], dropout_rate=0.5, dtype="float32")
    if arg.model != "question_only":
        model.update(channels=size["channels"], norm_groups=size["norm_groups"])
    if arg.model == "relation_network":
        # factorised: g's first layer as three broadcast projections (tests check it equals
        # the direct concatenation); bfloat16 was slower than float32 on this CPU.
        model.update(g_width=arg.g_width or size["g_width"], g_depth=size["g_depth"])
        model.update(factorised=True)
    config.model = model

    config.batch_size = batch  # images per step, each with its 20 questions
    config.microbatches = 1
    config.total_steps = steps
    config.optim = dict(
        name="adamw",
        lr=arg.lr,
        min_lr_ratio=1.0,  # a constant learning rate, as in the paper
        warmup_steps=0,
        weight_decay=0.0,  # plain Adam
        b1=0.9,
        b2=0.999,
        clip_norm=0.0,
    )

    config.mesh = dict(data=-1, fsdp=1)
    config.sharding = dict(rules=[], fsdp=False, fsdp_min_size=2**14, activation_rules=None)
    config.log_every = max(1, min(50, steps // 20))
    # The RN is slow here (seconds a step): save often, so a stopped run loses little.
    checkpoint_every = 250 if arg.model == "relation_network" else 1000
    config.checkpoint_every = max(1, min(checkpoint_every, steps // 4))
    config.keep_checkpoints = 2
    config.on_nonfinite = "stop"

    # 10 images: 200 questions, 625 pairs each, through g at once in the RN.
    every = max(1, steps_per_epoch // arg.evals_per_epoch)
    config.evals = answer_evals(batch_size=10, every=every)
    return config


def get_sweep(arg=None):
    r"""The paper's models side by side, optionally at several learning rates and g widths.

      python -m experiments.sweep \
          --config=mmjax/projects/sort_of_clevr/configs/vqa_relation_network.py:epochs=1 \
          --workdir=runs/rn_sweep --sweep_arg=model=cnn_mlp/relation_network,lr=1e-4/2.5e-4

    `arg` (--sweep_arg) holds '/'-separated values: `model=` (default all three), `lr=`
    (default 2.5e-4), `g_width=` (default 256; it only changes the RN's g). The full
    reproduction, with the transformer and a results table next to the paper's numbers, is
    mmjax.projects.sort_of_clevr.reproduce_relation_networks.py.
    """
    from mmjax import sweeps  # only sweeps need it, not get_config

    arg = parse_arg(arg, model="question_only/cnn_mlp/relation_network", lr="2.5e-4", g_width="")
    axes = {":model": sweeps.split_values(arg.model)}
    axes["optim.lr"] = sweeps.split_values(arg.lr, float)
    if arg.g_width:
        axes[":g_width"] = sweeps.split_values(arg.g_width, int)
    return sweeps.product(**axes)
