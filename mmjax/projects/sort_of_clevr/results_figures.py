r"""The figures of the default Sort-of-CLEVR runs, for their results pages.

  python -m mmjax.projects.sort_of_clevr.results_figures --runs=/tmp/mmjax_figures \
      [--tasks=vqa,captioning,retrieval,autoencoding] [--train=true] [--pointing_scenes=200]

For each task it trains the task's default config into `<runs>/<task>` with
`python -m mmjax.main` (resuming a stopped run; skipped when the run has finished), copies the
run's config.json and metrics.jsonl into `results/default_<task>/` (checkpoints are never
committed), and writes there: `curves.png` (learning curves, drawn from the copied
metrics.jsonl), the task's example figures drawn from the checkpoint, for VQA `pointing.json` (how
often the attention points at the object a question is about), and `figures.md`, the page
that shows them with the numbers behind them. `--train=false` only draws, from finished runs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

from absl import app, flags

FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
CONFIGS = {
    "vqa": "configs/vqa_transformer.py",
    "captioning": "configs/caption_transformer.py",
    "retrieval": "configs/retrieval_dual_encoder.py",
    "autoencoding": "configs/autoencoder.py",
}
FOLDERS = {
    "vqa": "default_vqa",
    "captioning": "default_captioning",
    "retrieval": "default_retrieval",
    "autoencoding": "default_autoencoder",
}


def finished(workdir: str) -> bool:
    """Whether the run in `workdir` reached its last step and scored the test split."""
    from mmjax.workdir import METRICS, Workdir, read_metrics

    path = os.path.join(workdir, METRICS)
    if not os.path.isfile(path):
        return False
    total = Workdir(workdir, writer=False).read_config().total_steps
    return any(
        r["step"] == total and any(k.startswith("test/") for k in r) for r in read_metrics(path)
    )


def train(task: str, workdir: str) -> None:
    """`python -m mmjax.main` on the task's default config (it resumes a stopped run)."""
    command = [
        sys.executable,
        "-m",
        "mmjax.main",
        f"--config={CONFIGS[task]}",
        f"--workdir={workdir}",
    ]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def _comparable(workdir: str) -> tuple[dict, list[dict]]:
    """A run's config without its data_dir and its metrics without timings and counts."""
    import json

    from mmjax.plot import BOOKKEEPING
    from mmjax.workdir import read_metrics

    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    config["data"].pop("data_dir", None)
    metrics = [
        {k: v for k, v in r.items() if k.rsplit("/", 1)[-1] not in BOOKKEEPING}
        for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))
    ]
    return config, metrics


def copy_run_files(workdir: str, folder: str) -> bool:
    """Copies the run's config.json and metrics.jsonl into the results folder.

    Run files already there from another run that logged the same (the same config but for its
    data_dir, the same metrics at every logged step but for timings) are kept as they are;
    returns True then ("kept"), False when the folder now holds this run's own files.
    """
    import filecmp

    os.makedirs(folder, exist_ok=True)
    names = ("config.json", "metrics.jsonl")
    there = [os.path.join(folder, n) for n in names]
    if all(os.path.isfile(p) for p in there):
        if all(filecmp.cmp(p, os.path.join(workdir, n), False) for p, n in zip(there, names)):
            return False
        if _comparable(folder) == _comparable(workdir):
            return True
    for name in names:
        shutil.copyfile(os.path.join(workdir, name), os.path.join(folder, name))
    return False


def draw(
    task: str, workdir: str, folder: str, kept: bool = False, pointing_scenes: int = 200
) -> list[str]:
    """The task's curves and example figures into `folder`; its figures.md; returns paths."""
    from mmjax import predict
    from mmjax.data.datasets import get_dataset
    from mmjax.projects.sort_of_clevr import results_examples as examples
    from mmjax.projects.sort_of_clevr import results_pages as pages

    predictor = predict.load(workdir)
    dataset = get_dataset(predictor.run.config.data)
    test = dataset.source("test")
    records = pages.records(folder)
    paths = [pages.curves(task, records, dataset, folder)]
    if task == "vqa":
        paths += examples.vqa_examples(predictor, test, folder)
        scenes = min(pointing_scenes, len(test))
        facts = scenes, examples.pointing(predictor, test, scenes)
        # The statistic as a run file, so the results page's table of it can be checked.
        paths.append(os.path.join(folder, "pointing.json"))
        with open(paths[-1], "w") as f:
            json.dump({"scenes": scenes, "step": predictor.run.step, "by_type": facts[1]}, f)
    elif task == "captioning":
        drawn, facts = examples.captioning_examples(predictor, test, folder)
        paths += drawn
    elif task == "retrieval":
        paths, facts = paths + examples.retrieval_examples(predictor, test, folder), None
    else:
        paths, facts = paths + examples.autoencoding_examples(predictor, test, folder), None
    paths.append(pages.write_page(task, folder, records, predictor.run.step, facts, kept))
    return paths


def main(argv) -> None:
    """Trains what is missing, copies the run files, draws every figure; prints the paths."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    logging.getLogger("absl").setLevel(logging.ERROR)
    if not FLAGS.runs:
        raise app.UsageError("--runs is required")
    unknown = sorted(set(FLAGS.tasks) - set(CONFIGS))
    if unknown:
        raise app.UsageError(f"unknown tasks {unknown}; known: {sorted(CONFIGS)}")
    for task in FLAGS.tasks:
        workdir = os.path.join(os.path.abspath(FLAGS.runs), task)
        if not finished(workdir):
            if not FLAGS.train:
                print(
                    f"mmjax: {workdir} has not finished; run without --train=false", file=sys.stderr
                )
                sys.exit(2)
            train(task, workdir)
        folder = os.path.join(RESULTS, FOLDERS[task])
        kept = copy_run_files(workdir, folder)
        if kept:
            print(f"{folder}: its committed run files are of the same run; kept", flush=True)
        for path in draw(task, workdir, folder, kept, FLAGS.pointing_scenes):
            print(os.path.relpath(path, ROOT), flush=True)


def define_flags() -> None:
    """The command's flags, defined only when it runs (tests import its functions alone)."""
    flags.DEFINE_string("runs", None, "Directory of the runs' workdirs (checkpoints live here).")
    flags.DEFINE_list("tasks", list(CONFIGS), "Tasks to draw.")
    flags.DEFINE_bool("train", True, "Train (or finish) a task's run when it has not finished.")
    flags.DEFINE_integer("pointing_scenes", 200, "VQA: test scenes of the pointing statistic.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
