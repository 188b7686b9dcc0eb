"""Speed benchmarks: against the machine's peak and against what users would pick instead.

  python -m experiments.benchmark --quick    # the VQA task, fewer reps
  python -m experiments.benchmark            # every task, more reps and lengths
  python -m experiments.benchmark --full     # also minutes to 94% relational VQA accuracy

(`--quick` took 86 s of wall time alone on this 2-core machine on a quiet morning; more when busy.)

Prints one JSON line per measurement and rewrites results/benchmarks.md
(`--results=PATH` elsewhere) with their tables, the goals and the command:

1. ceiling: a 2048^2 float32 matmul through XLA, GFLOP/s (`benchmarks/timing.py`);
2. train_step: each task's default config (`benchmarks/train_steps.py`);
   matmul_floor: each of those steps' own matmuls, alone (`benchmarks/matmul_floor.py`);
   width_scaling: the VQA step at larger widths, not in --quick (`benchmarks/width_scaling.py`);
3. attention: ours against jax.nn.dot_product_attention and einsums (`benchmarks/attention.py`);
4. pipeline: grain's supply against the step's demand (`benchmarks/input_pipeline.py`);
5. vilt: Hugging Face ViLT at the VQA model's shape (`benchmarks/vilt.py`; needs `.[bench]`);
6. time_to_accuracy, with `--full` only (`benchmarks/time_to_accuracy.py`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys

import jax

from experiments.benchmarks import (
    attention,
    input_pipeline,
    matmul_floor,
    report,
    time_to_accuracy,
    timing,
    train_steps,
    vilt,
    width_scaling,
)

RESULTS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "benchmarks.md"
)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much to measure: repetitions (medians are over them) and sizes.

    Attributes:
      reps: repetitions of every timed measurement.
      steps: train steps per repetition (of the step alone, and fed each way by the pipeline).
      vilt_steps: train steps per repetition against ViLT (whose step takes seconds).
      vilt_reps: repetitions against ViLT.
      tasks: the tasks whose train steps are measured.
      seq_lens: attention sequence lengths.
      attention_seconds: seconds of calls of an attention implementation per repetition.
      widths: VQA model widths whose train step's utilisation is measured (none: skipped).
      pipeline_batches: batches per repetition of the pipeline alone.
      vilt_variants: our VQA variants timed against ViLT (name -> config overrides).
    """

    reps: int
    steps: int
    vilt_steps: int
    vilt_reps: int
    tasks: tuple[str, ...]
    seq_lens: tuple[int, ...]
    attention_seconds: float
    widths: tuple[int, ...]
    pipeline_batches: int
    vilt_variants: dict


SINGLE_STREAM = [
    "model.share_image=False",
    "model.lookup_bias=none",
    "model.question_fusion=tokens",
    "model.keep_tokens=0",
    "model.patch_kernel=0",
]
PLANS = {
    "quick": Plan(
        reps=4,
        steps=16,
        vilt_steps=1,
        vilt_reps=3,
        tasks=("vqa",),
        seq_lens=(64, 256),
        attention_seconds=0.05,
        widths=(),
        pipeline_batches=10,
        vilt_variants={"ours": []},
    ),
    "default": Plan(
        reps=7,
        steps=25,
        vilt_steps=2,
        vilt_reps=7,
        tasks=tuple(train_steps.TASK_CONFIGS),
        seq_lens=(64, 256, 512),
        attention_seconds=0.1,
        widths=(64, 128, 256, 512),
        pipeline_batches=20,
        vilt_variants={"ours": [], "ours_single_stream": SINGLE_STREAM},
    ),
}

NOTES = {
    "ceiling": "XLA's own float32 matmul on all cores; the two shapes timed in turns. The square "
    "one is the machine's practical peak; the thin one has the default VQA model's width (64): "
    "what XLA reaches on the matmuls the small models are made of. The train steps' "
    "utilisation divides by the square matmul timed again in turns with each step.",
    "train_step": "The trainer's jitted step (`mmjax.train.steps.compile_steps`) on a "
    "constant batch of real examples, run as the loop runs it (the next step dispatched before "
    "the previous one is waited for). FLOPs are XLA's cost analysis of the compiled step; "
    "`of ceiling` is the achieved FLOP/s over the 2048^2 matmul's, the two timed in turns so "
    "that both see the same load (model FLOPs utilisation).",
    "matmul_floor": matmul_floor.__doc__.strip().split("\n\n")[1].replace("\n", " "),
    "width_scaling": width_scaling.__doc__.strip().split("\n\n")[1].replace("\n", " "),
    "attention": attention.__doc__.strip().split("\n\n")[1].replace("\n", " ")
    + " Batch and heads are the default VQA model's ([8, L, 4, 16]). `speed vs jax.nn` above 1 "
    "means ours is faster. Without dropout or returned weights ours calls "
    "jax.nn.dot_product_attention itself, adding only the zeroing of fully masked rows.",
    "pipeline": input_pipeline.__doc__.strip().split("\n\n")[1].replace("\n", " "),
    "vilt": vilt.__doc__.strip().split("\n\n", 1)[1].replace("\n\n", " ").replace("\n", " "),
    "time_to_accuracy": time_to_accuracy.__doc__.strip().split("\n\n")[1].replace("\n", " "),
}


class Results:
    """Prints each measurement as a JSON line and keeps the results page up to date with them.

    The file is rewritten after every line, marked incomplete until `finish`, so a run
    stopped early (Ctrl-C on a busy machine) still leaves the tables of what it measured.
    """

    def __init__(self, path: str, command: str, machine: str):
        self.path, self.command, self.machine = path, command, machine
        self.lines: list[dict] = []

    def _write(self, complete: bool) -> None:
        text = report.render(self.lines, self.command, self.machine, NOTES, complete)
        with open(self.path + ".tmp", "w") as f:
            f.write(text)
        os.replace(self.path + ".tmp", self.path)

    def emit(self, line: dict) -> None:
        """Prints `line` and adds it to the results page."""
        self.lines.append(line)
        print(json.dumps(line), flush=True)
        self._write(complete=False)

    def finish(self) -> None:
        """Writes the results page without the incomplete mark."""
        self._write(complete=True)
        print(f"wrote {self.path}", file=sys.stderr)


def _machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPU cores ({platform.machine()}), JAX {jax.__version__} on "
        f"{jax.devices()[0].device_kind} ({len(jax.devices())} device(s)); "
        f"load average at the start {load} (a shared machine: other jobs ran alongside)."
    )


def run(plan: Plan, full: bool, results: Results) -> None:
    """Runs every measurement of `plan` (and time to accuracy if `full`) into `results`.

    Those the goals are about come first: the VQA step, its pipeline, ViLT, attention.
    """
    emit = results.emit
    # The square one is the ceiling; the thin one has the default VQA model's width.
    for line in timing.matmul_ceilings([train_steps.CEILING, (4096, 64, 64)], max(5, plan.reps)):
        emit(line)

    vqa = train_steps.setup("vqa")
    vqa_step = train_steps.measure(vqa, plan.reps, plan.steps)
    emit(vqa_step)
    emit(matmul_floor.measure(vqa, plan.reps, plan.steps))
    emit(input_pipeline.measure(vqa, plan.pipeline_batches, plan.reps, plan.steps))

    try:
        import transformers  # noqa: F401
    except ImportError:
        print("vilt: skipped, transformers is missing (pip install -e '.[bench]')", file=sys.stderr)
    else:
        variants = {
            name: train_steps.setup("vqa", overrides) if overrides else vqa
            for name, overrides in plan.vilt_variants.items()
        }
        for line in vilt.measure(variants, plan.vilt_reps, plan.vilt_steps):
            emit(line)
        del variants

    for backward in (False, True):
        for seq_len in plan.seq_lens:
            for masked in (False, True):
                emit(
                    attention.measure(seq_len, masked, backward, plan.reps, plan.attention_seconds)
                )

    for name in plan.tasks:
        if name == "vqa":
            continue
        bench = train_steps.setup(name)
        emit(train_steps.measure(bench, plan.reps, plan.steps))
        emit(matmul_floor.measure(bench, plan.reps, plan.steps))
        emit(input_pipeline.measure(bench, plan.pipeline_batches, plan.reps, plan.steps))
        del bench

    for width in plan.widths:
        if width == vqa.config.model.width:  # the default step, timed above
            emit(width_scaling.line(vqa_step, vqa.config.model))
            continue
        bench = train_steps.setup("vqa", width_scaling.overrides(width))
        emit(width_scaling.measure(bench, plan.reps))
        del bench

    if full:
        emit(time_to_accuracy.measure())


def main(argv: list[str] | None = None) -> None:
    """Parses the flags, runs the benchmark and writes the results page (--results)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="VQA only, fewer repetitions")
    parser.add_argument("--full", action="store_true", help="also time to 94%% relational")
    parser.add_argument("--results", default=RESULTS, help="the Markdown file to rewrite")
    args = parser.parse_args(argv)
    command = "python -m experiments.benchmark" + "".join(
        f" {flag}" for flag, on in (("--quick", args.quick), ("--full", args.full)) if on
    )
    # The load average before this run adds its own.
    results = Results(args.results, command, _machine())
    run(PLANS["quick" if args.quick else "default"], args.full, results)
    results.finish()


if __name__ == "__main__":
    main()
