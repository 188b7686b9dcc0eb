r"""Fine-tuning from a retrieval run's image tower against training from scratch.

  python -m experiments.start_from_weights --workdir=runs/start_from_weights \
      [--out=experiments/results/start_from_weights] [--report] \
      [--runs=retrieval,caption_scratch,...]

Runs, one `python -m mmjax.main` process each, in order (a finished run is skipped, a stopped
one resumes from its checkpoint):

  retrieval          the dual encoder (CLIP loss, its config's 1,000 steps) with the
                     captioner's image tower: 5-pixel patches embedded from 15-pixel windows,
                     the 64 salient ones, width 128, one block, MLP 256
  caption_scratch    the captioning config, `CAPTION_STEPS` steps, from scratch
  caption_init       the same, its stem and image encoder from `retrieval`
  caption_frozen     the same, those parameters also frozen (only the decoder trains)
  vqa_scratch        the VQA config (size=small: 3,000 steps) at width 128, from scratch
  vqa_init           the same, its stem from `retrieval` (its fusion blocks see both
                     modalities, so the stem is what an image tower gives it)

Every run is evaluated on the validation split every `EVERY` steps. Then it writes `--out`:
README.md (the table: validation score over the steps, final validation and test scores, and
the first evaluated step at which each run reaches the from-scratch run's final validation
score) and each run's config.json, metrics.jsonl and init_from.json (never checkpoints).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

from mmjax.workdir import read_metrics

CAPTION_STEPS = 1500
EVERY = 250
TOWER = [
    "--config.model.stem=patch",
    "--config.model.patch_size=5",
    "--config.model.patch_kernel=15",
    "--config.model.keep_tokens=64",
    "--config.model.token_selector=salient_patches",
    "--config.model.width=128",
    "--config.model.mlp_dim=256",
]
EVALS = [f"--config.evals.validation.every={EVERY}"]


def runs(workdir: str) -> dict[str, tuple[str, list[str]]]:
    """Run name -> (config spec, overrides), in the order they run."""
    retrieval = os.path.join(workdir, "retrieval")
    caption = f"configs/caption_transformer.py:steps={CAPTION_STEPS}"
    caption_init = [
        f"--config.init_from.path={retrieval}",
        "--config.init_from.include=^(stem|image_encoder)/",
    ]
    vqa = "configs/vqa_transformer.py:size=small"
    vqa_common = ["--config.model.width=128", *EVALS]
    return {
        "retrieval": ("configs/retrieval_dual_encoder.py", TOWER),
        "caption_scratch": (caption, EVALS),
        "caption_init": (caption, EVALS + caption_init),
        "caption_frozen": (
            caption,
            EVALS + caption_init + ["--config.optim.frozen=^(stem|image_encoder)/"],
        ),
        "vqa_scratch": (vqa, vqa_common),
        "vqa_init": (
            vqa,
            vqa_common
            + [f"--config.init_from.path={retrieval}", "--config.init_from.include=^stem/"],
        ),
    }


# Task -> (the validation metric compared, its label), from metrics.jsonl.
METRICS = {
    "retrieval": ("validation/i2t_r1", "image->text R@1"),
    "caption": ("validation/cider_d", "CIDEr-D"),
    "vqa": ("validation/accuracy", "accuracy"),
}
# Task -> the test metrics shown at the end, (key, label).
TEST_METRICS = {
    "caption": (
        ("test/cider_d", "test CIDEr-D"),
        ("objects/objects_all_correct", "test objects right"),
    ),
    "vqa": (
        ("test/accuracy", "test accuracy"),
        ("test/accuracy/relational", "test relational"),
    ),
}


def finished(workdir: str) -> bool:
    """Whether the run in `workdir` has its final (test) evaluation."""
    path = os.path.join(workdir, "metrics.jsonl")
    return os.path.exists(path) and any(
        any(k.startswith("test/") for k in r) for r in read_metrics(path)
    )


def train(name: str, workdir: str, spec: tuple[str, list[str]]) -> None:
    """Runs (or resumes) one run; a finished one is skipped."""
    run_dir = os.path.join(workdir, name)
    if finished(run_dir):
        print(f"{name}: finished, skipped", flush=True)
        return
    config, overrides = spec
    command = [sys.executable, "-m", "mmjax.main", f"--config={config}", f"--workdir={run_dir}"]
    print(f"{name}: {' '.join(command[1:] + overrides)}", flush=True)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "log.txt"), "a") as log:
        subprocess.run(command + overrides, stdout=log, stderr=subprocess.STDOUT, check=True)


def curve(run_dir: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of `key` in the run's metrics.jsonl, the last value of a step kept."""
    values = {r["step"]: r[key] for r in read_metrics(run_dir) if r.get(key) is not None}
    return sorted(values.items())


def first_step_at(points, target: float) -> int | None:
    """The first evaluated step whose value is at least `target`, or None."""
    return next((step for step, value in points if value >= target - 1e-12), None)


def report(workdir: str, out: str, names: list[str]) -> str:
    """Writes README.md and the runs' files into `out`; returns the page."""
    os.makedirs(out, exist_ok=True)
    lines = [
        "# Fine-tuning from a retrieval run's image tower",
        "",
        "`python -m experiments.start_from_weights --workdir=runs/start_from_weights` "
        "(docs/weights.md). Validation scores (Sort-of-CLEVR's 200 validation scenes) every "
        f"{EVERY} steps; test once at the end. 'Steps to scratch's final': the first "
        "evaluated step at which the run reaches the final validation score of the same task "
        "trained from scratch.",
        "",
    ]
    retrieval = os.path.join(workdir, "retrieval")
    if finished(retrieval):
        last = {k: v for r in read_metrics(retrieval) for k, v in r.items()}
        lines += [
            "## retrieval (the source of the towers)",
            "",
            f"Test Recall@1 image->text {last['test/i2t_r1']:.3f}, text->image "
            f"{last['test/t2i_r1']:.3f}; zero-shot cell of the red object on validation "
            f"(`zero_shot`, 9 classes) top-1 {last['zero_shot/top1']:.3f}, top-3 "
            f"{last['zero_shot/top3']:.3f} (chance 0.111, 0.333).",
            "",
        ]
    for task in ("caption", "vqa"):
        key, label = METRICS[task]
        arms = [n for n in names if n.startswith(task) and finished(os.path.join(workdir, n))]
        if not arms:
            continue
        curves = {n: curve(os.path.join(workdir, n), key) for n in arms}
        steps = sorted({s for points in curves.values() for s, _ in points})
        scratch = curves.get(f"{task}_scratch")
        target = scratch[-1][1] if scratch else None
        lines += [f"## {task}: validation {label}", ""]
        tests = TEST_METRICS[task]
        header = ["run", *map(str, steps), *(label for _, label in tests)]
        header.append("steps to scratch's final")
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for name in arms:
            by_step = dict(curves[name])
            reached = first_step_at(curves[name], target) if target is not None else None
            row = [name] + [f"{by_step[s]:.3f}" if s in by_step else "" for s in steps]
            for key, _ in tests:
                test = curve(os.path.join(workdir, name), key)
                row.append(f"{test[-1][1]:.3f}" if test else "")
            row.append(str(reached or "not reached"))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    for name in names:
        source, target_dir = os.path.join(workdir, name), os.path.join(out, name)
        if not finished(source):
            continue
        os.makedirs(target_dir, exist_ok=True)
        for file in ("config.json", "metrics.jsonl", "init_from.json"):
            if os.path.exists(os.path.join(source, file)):
                shutil.copy(os.path.join(source, file), os.path.join(target_dir, file))
    page = "\n".join(lines) + "\n"
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(page)
    return page


def main(argv=None) -> None:
    """Trains the runs in order (skipping finished ones), then writes the report."""
    parser = argparse.ArgumentParser(prog="python -m experiments.start_from_weights")
    parser.add_argument("--workdir", default="runs/start_from_weights")
    parser.add_argument("--out", default="experiments/results/start_from_weights")
    parser.add_argument("--runs", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--report", action="store_true", help="only rewrite the report")
    args = parser.parse_args(argv)
    workdir = os.path.abspath(args.workdir)
    table = runs(workdir)
    names = [n for n in args.runs.split(",") if n] or list(table)
    if not args.report:
        for name in names:
            train(name, workdir, table[name])
    print(report(workdir, args.out, list(table)))


if __name__ == "__main__":
    main()
