r"""Reproduces Santoro et al. 2017 on Sort-of-CLEVR: RN, CNN+MLP, question-only, transformer.

  python -m mmjax.projects.sort_of_clevr.reproduce_relation_networks \
      --workdir=runs/relation_networks [--epochs=relation_network=10,cnn_mlp=40] [--g_width=64] \
      [--models=cnn_mlp,...] [--parallel=1] \
      [--out=mmjax/projects/sort_of_clevr/results/relation_networks] [--dry_run] [--report] \
      [--config_args=num_train=...] [--config.a.b=value ...]

Each model runs as its own `python -m mmjax.main` process in `workdir/<run>` (the RN's run
name carries its g width), through experiments.sweep's runner: a log.txt and a
sweep_status.json per run, Ctrl-C or SIGTERM stops the runs after they save a checkpoint.
The same command resumes: finished runs are skipped, the others continue from their
checkpoints. A larger `--epochs` budget later continues a finished run from where it ended
(the RN, CNN+MLP and question-only models train at a constant learning rate, so that is the
same run as one started with the larger budget; the transformer's cosine schedule is not).

At the end (and with `--report` alone) it writes `--out`/results.json, README.md and
curves.png from the runs' metrics.jsonl (see mmjax.projects.sort_of_clevr.relation_networks_report).

`--epochs` sets a budget per model (epochs of 9,800 images); the defaults below are sized for
this 2-core CPU, not the paper's 20 (RN) and 100 (CNN+MLP) epochs. `--config_args` go to
every config file (e.g. `size=tiny,num_train=64,num_test=16` for a test);
`--config.a.b=value` flags go to every run.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys

from experiments import sweep
from mmjax import sweeps
from mmjax.config_utils import ConfigError
from mmjax.projects.sort_of_clevr import relation_networks_report as report

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
RN_CONFIG = os.path.join(HERE, "configs", "vqa_relation_network.py")
TRANSFORMER_CONFIG = os.path.join(ROOT, "configs", "vqa_transformer.py")
MODELS = ("question_only", "cnn_mlp", "relation_network", "transformer")
# Budgets for this 2-core CPU (epochs); None: the config's own (the transformer's 12,000 steps
# of 8 images, 9.8 epochs).
DEFAULT_EPOCHS = dict(question_only=1.0, cnn_mlp=40.0, relation_network=10.0, transformer=None)
PAPER_EPOCHS = dict(cnn_mlp=100, relation_network=20)  # kimhc6028's
COMMON_DIFFERENCES = "GroupNorm, not BatchNorm; batches of 4 images x 20 questions"


def parse_flags(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(flags, overrides for every run): --config.a.b=value arguments are the latter."""
    common = [a[len("--config.") :] for a in argv if a.startswith("--config.")]
    parser = argparse.ArgumentParser(
        prog="python -m mmjax.projects.sort_of_clevr.reproduce_relation_networks",
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("--workdir", default="runs/relation_networks", help="one run directory per model")
    add("--out", default=os.path.join(HERE, "results", "relation_networks"))
    add("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    add("--epochs", default="", help="budgets, e.g. relation_network=4,cnn_mlp=20")
    # 64, not the paper's 256: g runs on all 625 object pairs, and at 256 one epoch takes hours
    # on a 2-core CPU (probes/relation_network_speed.py times it), so the RN would get a
    # fraction of an epoch instead of several.
    add("--g_width", type=int, default=64, help="width of the RN's g (the paper's: 256)")
    add("--evals_per_epoch", type=int, default=2, help="validation evaluations per epoch")
    add("--config_args", default="", help="key=value,... for every config file")
    add("--parallel", type=int, default=1, help="runs at once (default 1)")
    add("--stop_timeout", type=float, default=300.0, help="seconds stopped runs get to save")
    add("--dry_run", action="store_true", help="print the commands, run nothing")
    add("--report", action="store_true", help="only rewrite the results from the workdir")
    flags = parser.parse_args([a for a in argv if not a.startswith("--config.")])
    flags.models = [m.strip() for m in flags.models.split(",") if m.strip()]
    unknown = [m for m in flags.models if m not in MODELS]
    if unknown or not flags.models:
        parser.error(f"--models: {unknown or 'none given'}; choose from {', '.join(MODELS)}")
    budgets = dict(DEFAULT_EPOCHS)
    for item in filter(None, flags.epochs.split(",")):
        name, _, value = item.partition("=")
        if name.strip() not in MODELS:
            parser.error(f"--epochs: unknown model {name.strip()!r}; choose from {MODELS}")
        try:
            budgets[name.strip()] = float(value)
        except ValueError:
            parser.error(f"--epochs: {item!r} is not model=<number of epochs>")
        if budgets[name.strip()] <= 0:
            parser.error(f"--epochs: {item!r} must be positive")
    flags.budgets = budgets
    if min(flags.g_width, flags.parallel, flags.evals_per_epoch) < 1:
        parser.error("--g_width, --parallel and --evals_per_epoch must be at least 1")
    return flags, common


def run_name(model: str, g_width: int) -> str:
    """The run's directory name: the RN's carries its g width (another width: another run)."""
    return f"{model}_g{g_width}" if model == "relation_network" else model


def _config_args(text: str) -> dict[str, str]:
    """'a=1,b=2' -> {'a': '1', 'b': '2'}."""
    pairs = [item.partition("=") for item in filter(None, text.split(","))]
    if any(not sep for _, sep, _ in pairs):
        raise ConfigError(f"--config_args={text!r}: expected key=value,...")
    return {key.strip(): value.strip() for key, _, value in pairs}


def config_spec(
    model: str, epochs, g_width: int, config_args: str, common, evals_per_epoch: int = 1
) -> str:
    """The --config value of one model's run, `epochs` turned into its config's arguments."""
    from mmjax.config_loader import load_config

    extra = _config_args(config_args)
    if model == "transformer":
        if epochs is None:
            return sweeps.with_config_args(TRANSFORMER_CONFIG, extra)
        # Its config counts steps, not epochs: the batch size of the size chosen sets them.
        base = sweeps.with_config_args(TRANSFORMER_CONFIG, extra)
        config = load_config(base, list(common))
        steps = math.ceil(epochs * config.data.num_train / config.batch_size)
        return sweeps.with_config_args(base, {"steps": str(steps)})
    args = dict(model=model, evals_per_epoch=str(evals_per_epoch))
    if epochs is not None:
        args["epochs"] = repr(float(epochs))
    if model == "relation_network":
        args["g_width"] = str(g_width)
    return sweeps.with_config_args(RN_CONFIG, {**args, **extra})


def describe(model: str, summary: dict) -> tuple[str, str]:
    """(label, how the run differs from the paper) for the results table."""
    epochs = summary["final"]["epochs"] if summary["final"] else 0.0
    g_width = summary["model"].get("g_width")
    if model == "transformer":
        return (
            "multimodal transformer (mmjax)",
            "not in the paper: configs/vqa_transformer.py, question words rather than codes, "
            "8 images x 20 questions per batch, AdamW 1e-3 with cosine decay",
        )
    if model == "question_only":
        return (
            "question-only MLP",
            "the question code through 256, 256, dropout, 10; the image is not seen",
        )
    parts = [f"{report.epochs_text(epochs)} of kimhc6028's {PAPER_EPOCHS[model]} epochs"]
    label = "CNN+MLP"
    if model == "relation_network":
        label = f"Relation Network (g width {g_width})"
        if g_width != 256:
            parts.append(f"g width {g_width}, not 256")
    parts.append(COMMON_DIFFERENCES + "; Adam 2.5e-4")
    return label, "; ".join(parts)


def _data_config(config_args: str, common):
    from mmjax.config_loader import load_config

    spec = sweeps.with_config_args(RN_CONFIG, _config_args(config_args))
    return load_config(spec, list(common)).data


def prepare_data(config_args: str, common) -> None:
    """Builds the dataset once, before runs that would each build it at the same time."""
    from mmjax.data.datasets import get_dataset

    get_dataset(_data_config(config_args, common)).prepare()


def question_only_majority(config_args: str, common):
    """The image-blind baseline's test accuracy per subtype, and the data config.

    The baseline answers each (colour, subtype) with its most frequent training answer: the
    best a model that ignores the image can do.
    """
    from mmjax.data.datasets import get_dataset

    data = _data_config(config_args, common)
    dataset = get_dataset(data)
    dataset.prepare()
    return dataset.answer_baseline("test")[1], data


def write_report(flags, common, jobs, argv) -> list[str]:
    """Summarises every run that has a config.json and writes the results files.

    The runs of the flags' models come first, then RN runs of other g widths found in the
    workdir (an earlier --g_width), so the table keeps every width that was run.
    """
    baseline, data = question_only_majority(flags.config_args, common)
    found = [(model, job.name, job.directory) for model, job in jobs]
    if os.path.isdir(flags.workdir):
        for name in sorted(os.listdir(flags.workdir)):
            if name.startswith("relation_network_g") and name not in {n for _, n, _ in found}:
                found.append(("relation_network", name, os.path.join(flags.workdir, name)))
    runs = []
    for model, name, directory in found:
        if not os.path.exists(os.path.join(directory, "config.json")):
            continue
        summary = report.summarize(directory)
        label, differs = describe(model, summary)
        runs.append(dict(name=name, label=label, differs=differs, **summary))
    meta = dict(
        command=shlex.join(
            ["python", "-m", "mmjax.projects.sort_of_clevr.reproduce_relation_networks", *argv]
        ),
        num_train=data.num_train,
        num_test=data.num_test,
        budgets={m: flags.budgets[m] for m in flags.models},
    )
    return report.write(flags.out, runs, baseline, meta)


def main(argv: list[str] | None = None, out=None) -> int:
    """Runs (or resumes) the models' runs and writes the results; returns the exit status."""
    out = out or sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    flags, common = parse_flags(argv)
    jobs = []
    try:
        for model in flags.models:
            spec = config_spec(
                model,
                flags.budgets[model],
                flags.g_width,
                flags.config_args,
                common,
                flags.evals_per_epoch,
            )
            directory = os.path.join(flags.workdir, run_name(model, flags.g_width))
            command = [sys.executable, "-m", "mmjax.main", f"--config={spec}"]
            command += [f"--workdir={directory}", *(f"--config.{c}" for c in common)]
            jobs.append((model, sweep.Job(run_name(model, flags.g_width), directory, command)))
    except ConfigError as error:
        print(f"reproduce_relation_networks: config error: {error}", file=sys.stderr)
        return 2
    if flags.dry_run:
        for _, job in jobs:
            print(shlex.join(job.command), file=out)
        return 0
    code = 0
    if not flags.report:
        for _, job in jobs:
            status = sweep.read_status(job.directory)
            if status.get("status") == "done" and status.get("command") != shlex.join(job.command):
                # A new budget for a finished run: it continues from its last checkpoint.
                sweep.write_status(job.directory, {**status, "status": "extended"})
        prepare_data(flags.config_args, common)
        runner = sweep.Runner([job for _, job in jobs], flags.parallel, flags.stop_timeout, out=out)
        code = runner.run()
    for path in write_report(flags, common, jobs, argv):
        print(f"[reproduce] wrote {path}", file=out)
    return code


if __name__ == "__main__":
    sys.exit(main())
