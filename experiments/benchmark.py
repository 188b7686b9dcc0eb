"""Speed benchmarks: against the machine's peak and against what users would pick instead.

  python -m experiments.benchmark --quick    # the VQA task, fewer reps (under two minutes)
  python -m experiments.benchmark            # every task, more reps and sizes
  python -m experiments.benchmark --sections=fusion_attention,cached_attention --run=attention
  python -m experiments.benchmark --render   # only rewrite the page from the run files
  python -m experiments.benchmark --sections=steps --tasks=retrieval --run=retrieval_new \
      --task_config=retrieval=configs/retrieval_dual_encoder.py --override=optim.lr=3e-4

Prints one JSON line per measurement, writes them to
experiments/results/benchmarks/runs/<run>.jsonl (`--run`: "quick" or "default" unless given;
the file starts with a `run` line: command, machine, load) and rewrites the results page,
experiments/results/benchmarks/README.md, from every run file there (`report.py`).
Sections (`--sections`, default all of the plan's):

- ceiling: a 2048^2 float32 matmul through XLA, GFLOP/s (`benchmarks/timing.py`);
- steps: per task, the default config's train step (`train_steps.py`), its matmuls alone
  (`matmul_floor.py`) and its input pipeline (`input_pipeline.py`);
- width_scaling: the VQA step at larger widths (`width_scaling.py`), three times at the widest;
- fusion_attention: `image_text_attention` against the per-question attention it replaces;
- cached_attention: the captioner's decoding self-attention against its alternatives;
- attention: our self-attention against jax.nn.dot_product_attention and einsums;
- vilt: Hugging Face ViLT at the VQA model's shape, equal work (`vilt.py`; needs `.[bench]`).

Time to accuracy, which takes hours of CPU, is its own command
(`python -m experiments.benchmarks.time_to_accuracy`, lines in runs/time_to_accuracy.jsonl).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys

import jax

from experiments.benchmarks import (
    attention,
    budget_training,
    cached_attention,
    fusion_attention,
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
    os.path.dirname(os.path.abspath(__file__)), "results", "benchmarks", "README.md"
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
      seq_lens: self-attention sequence lengths.
      attention_seconds: seconds of calls of an attention implementation per repetition.
      fusion_cases: `fusion_attention.SHAPES` measured.
      cached_cases: `cached_attention.CASES` measured.
      widths: VQA model widths whose train step's utilisation is measured.
      widest_runs: measurements of the widest width (the goal asks for three).
      pipeline_batches: batches per repetition of the pipeline alone.
      vilt_variants: our VQA variants timed against ViLT (name -> config overrides).
      overrides: config overrides of every task's step in the `steps` section.
    """

    reps: int
    steps: int
    vilt_steps: int
    vilt_reps: int
    tasks: tuple[str, ...]
    seq_lens: tuple[int, ...]
    attention_seconds: float
    fusion_cases: tuple[str, ...]
    cached_cases: tuple[str, ...]
    widths: tuple[int, ...]
    widest_runs: int
    pipeline_batches: int
    vilt_variants: dict
    overrides: tuple[str, ...] = ()


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
        seq_lens=(),
        attention_seconds=0.05,
        fusion_cases=("default", "tokens_4x"),
        cached_cases=("default",),
        widths=(),
        widest_runs=1,
        pipeline_batches=10,
        vilt_variants={"ours": []},
    ),
    "default": Plan(
        reps=7,
        steps=25,
        vilt_steps=2,
        vilt_reps=5,
        tasks=tuple(train_steps.TASK_CONFIGS),
        seq_lens=(64, 256),
        attention_seconds=0.1,
        fusion_cases=tuple(fusion_attention.SHAPES),
        cached_cases=tuple(cached_attention.CASES),
        widths=(64, 128, 256, 512),
        widest_runs=3,
        pipeline_batches=20,
        vilt_variants={"ours": [], "ours_single_stream": SINGLE_STREAM},
    ),
}
SECTIONS = (
    "ceiling",
    "fusion_attention",
    "cached_attention",
    "steps",
    "vilt",
    "width_scaling",
    "attention",
)


def _paragraph(module, index: int = 1) -> str:
    """Paragraph `index` of a module's docstring, on one line."""
    return module.__doc__.strip().split("\n\n")[index].replace("\n", " ")


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
    "matmul_floor": _paragraph(matmul_floor)
    + " `step / bound` is the step's utilisation over the utilisation at the floor.",
    "width_scaling": _paragraph(width_scaling),
    "fusion_attention": _paragraph(fusion_attention)
    + " `vs naive` and `vs jax.nn` above 1 mean ours is faster.",
    "cached_attention": _paragraph(cached_attention),
    "attention": _paragraph(attention)
    + " Batch and heads are the default VQA model's ([8, L, 4, 16]). Without dropout or returned "
    "weights ours calls jax.nn.dot_product_attention itself, adding only the zeroing of fully "
    "masked rows: no goal rests on this table.",
    "pipeline": _paragraph(input_pipeline),
    "vilt": vilt.__doc__.strip().split("\n\n", 1)[1].replace("\n\n", " ").replace("\n", " "),
    "time_to_accuracy": _paragraph(time_to_accuracy)
    + " "
    + _paragraph(budget_training, 3)
    + " A model whose config's schedule ends before a budget is scored at its end (the same "
    "steps in the later rows).",
}


class Results:
    """Prints each measurement as a JSON line, appends it to the run's file, rewrites the page.

    The page is rewritten from every run file after every line, so a run stopped early (Ctrl-C
    on a busy machine) still leaves the tables of what it measured.
    """

    def __init__(self, page: str, run: str, header: dict):
        self.page = page
        self.path = os.path.join(os.path.dirname(page), "runs", f"{run}.jsonl")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "w") as f:
            f.write(json.dumps(header) + "\n")
        self._write()

    def _write(self) -> None:
        runs = report.read_runs(os.path.dirname(self.path))
        text = report.render_page(runs, NOTES)
        with open(self.page + ".tmp", "w") as f:
            f.write(text)
        os.replace(self.page + ".tmp", self.page)

    def emit(self, line: dict) -> None:
        """Prints `line` (with the 1-minute load average now) and adds it to the run and page."""
        line = dict(line, load_average_1min=round(os.getloadavg()[0], 2))
        print(json.dumps(line), flush=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
        self._write()


def run_header(command: str) -> dict:
    """The `run` line that starts a run file: the command, the machine and its load now."""
    return {
        "section": "run",
        "command": command,
        "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_cores": os.cpu_count(),
        "machine": f"{platform.machine()}, JAX {jax.__version__} on "
        f"{jax.devices()[0].device_kind} ({len(jax.devices())} device(s)), no GPU",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _vilt(plan: Plan, vqa, emit) -> None:
    try:
        import transformers  # noqa: F401
    except ImportError:
        print("vilt: skipped, transformers is missing (pip install -e '.[bench]')", file=sys.stderr)
        return
    variants = {
        name: train_steps.setup("vqa", overrides) if overrides else vqa
        for name, overrides in plan.vilt_variants.items()
    }
    for line in vilt.measure(variants, plan.vilt_reps, plan.vilt_steps):
        emit(line)


def _steps(plan: Plan, bench, emit) -> dict:
    step = train_steps.measure(bench, plan.reps, plan.steps)
    emit(step)
    emit(matmul_floor.measure(bench, plan.reps, plan.steps))
    emit(input_pipeline.measure(bench, plan.pipeline_batches, plan.reps, plan.steps))
    return step


def _widths(plan: Plan, vqa, vqa_step: dict | None, emit) -> None:
    for width in plan.widths:
        if vqa_step is not None and width == vqa.config.model.width:  # timed with the tasks
            emit(width_scaling.line(vqa_step, vqa.config.model))
            continue
        bench = train_steps.setup("vqa", width_scaling.overrides(width))
        for _ in range(plan.widest_runs if width == max(plan.widths) else 1):
            emit(width_scaling.measure(bench, plan.reps))
        del bench


def run(plan: Plan, sections: tuple[str, ...], emit) -> None:
    """Runs the `sections` of `plan`, passing each measurement to `emit`, in `SECTIONS` order."""
    if "ceiling" in sections:
        # The square one is the ceiling; the thin one has the default VQA model's width.
        for line in timing.matmul_ceilings([train_steps.CEILING, (4096, 64, 64)], plan.reps):
            emit(line)
    for backward in (False, True):
        for case in plan.fusion_cases if "fusion_attention" in sections else ():
            emit(fusion_attention.measure(case, backward, plan.reps, plan.attention_seconds))
    for case in plan.cached_cases if "cached_attention" in sections else ():
        emit(cached_attention.measure(case, plan.reps, plan.attention_seconds))
    vqa = vqa_step = None
    vqa_steps = "steps" in sections and "vqa" in plan.tasks
    if vqa_steps or "vilt" in sections:
        vqa = train_steps.setup("vqa", list(plan.overrides))
    if vqa_steps:
        vqa_step = _steps(plan, vqa, emit)
    if "vilt" in sections:
        _vilt(plan, vqa, emit)
    for name in plan.tasks if "steps" in sections else ():
        if name != "vqa":
            _steps(plan, train_steps.setup(name, list(plan.overrides)), emit)
    if "width_scaling" in sections:
        _widths(plan, vqa, vqa_step, emit)
    for backward in (False, True) if "attention" in sections else ():
        for seq_len in plan.seq_lens:
            for masked in (False, True):
                emit(
                    attention.measure(seq_len, masked, backward, plan.reps, plan.attention_seconds)
                )


def main(argv: list[str] | None = None) -> None:
    """Parses the flags, runs the benchmark and writes its run file and the results page."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="VQA only, fewer repetitions")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated")
    parser.add_argument("--tasks", default="", help="comma-separated (default: the plan's)")
    parser.add_argument(
        "--task_config",
        action="append",
        default=[],
        help="TASK=CONFIG[:ARGS]: measure TASK's step with this config file (repeatable)",
    )
    parser.add_argument(
        "--override", action="append", default=[], help="KEY=VALUE for every task's config"
    )
    parser.add_argument("--run", default="", help="run file name (default: quick or default)")
    parser.add_argument("--results", default=RESULTS, help="the results page to rewrite")
    parser.add_argument("--render", action="store_true", help="only rewrite the page from runs/")
    args = parser.parse_args(argv)
    if args.render:
        runs = report.read_runs(os.path.join(os.path.dirname(args.results), "runs"))
        with open(args.results, "w") as f:
            f.write(report.render_page(runs, NOTES))
        return
    sections = tuple(args.sections.split(","))
    if unknown := sorted(set(sections) - set(SECTIONS)):
        parser.error(f"unknown sections {unknown}; known: {', '.join(SECTIONS)}")
    command = "python -m experiments.benchmark" + " ".join(
        [""]
        + [f"{a}" for a in (argv if argv is not None else sys.argv[1:]) if "--results" not in a]
    )
    plan_name = "quick" if args.quick else "default"
    plan = PLANS[plan_name]
    if args.tasks:
        tasks = tuple(args.tasks.split(","))
        if unknown := sorted(set(tasks) - set(train_steps.TASK_CONFIGS)):
            parser.error(f"unknown tasks {unknown}; known: {', '.join(train_steps.TASK_CONFIGS)}")
        plan = dataclasses.replace(plan, tasks=tasks)
    for entry in args.task_config:
        name, _, spec = entry.partition("=")
        if name not in train_steps.TASK_CONFIGS or not spec:
            parser.error(f"--task_config={entry}: expected TASK=CONFIG with TASK one of the tasks")
        train_steps.TASK_CONFIGS[name] = (spec, train_steps.TASK_CONFIGS[name][1])
    plan = dataclasses.replace(plan, overrides=tuple(args.override))
    results = Results(args.results, args.run or plan_name, run_header(command))
    run(plan, sections, results.emit)
    print(f"wrote {results.path} and {results.page}", file=sys.stderr)


if __name__ == "__main__":
    main()
