"""The benchmark's JSON lines as its results page: one table per section, then the goals.

A line is a flat dict with a `section`; `SECTIONS` names the fields each section's table
shows (and so the fields every line of that section must have), `GOALS` (`goals.py`) what
the issue asks of them. `render_page` is pure, so it is tested without running a benchmark.
"""

from __future__ import annotations

import json
import os

from experiments.benchmarks.goals import GOALS

# section -> (title, [(field, column header, format)]).
SECTIONS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "ceiling": (
        "Machine ceiling: float32 matmul through XLA",
        [
            ("shape", "matmul", "`{}`"),
            ("median_s", "median s per matmul", "{:.3g}"),
            ("gflops_per_s", "GFLOP/s", "{:.1f}"),
        ],
    ),
    "train_step": (
        "Train step of each task's default config",
        [
            ("task", "task", "{}"),
            ("example", "one example", "`{}`"),
            ("batch_size", "batch", "{}"),
            ("parameters", "parameters", "{:,}"),
            ("step_ms", "step ms", "{:.1f}"),
            ("examples_per_s", "examples/s", "{:.1f}"),
            ("gflop_per_step", "GFLOP/step (XLA)", "{:.3g}"),
            ("gflops_per_s", "GFLOP/s", "{:.2f}"),
            ("ceiling_gflops_per_s", "ceiling GFLOP/s, in turns", "{:.1f}"),
            ("mfu", "of ceiling", "{:.1%}"),
        ],
    ),
    "matmul_floor": (
        "The train step's matmuls alone: how much utilisation its matmuls allow",
        [
            ("task", "task", "{}"),
            ("products", "dots and convolutions in the step", "{}"),
            ("distinct", "distinct", "{}"),
            ("share_of_flops", "of the step's FLOPs", "{:.0%}"),
            ("products_gflops_per_s", "their GFLOP/s alone", "{:.1f}"),
            ("floor_ms", "their ms alone", "{:.1f}"),
            ("step_ms", "step ms, in turns", "{:.1f}"),
            ("floor_share_of_step", "of the step", "{:.0%}"),
            ("ceiling_gflops_per_s", "ceiling GFLOP/s, in turns", "{:.1f}"),
            ("mfu", "step: of ceiling", "{:.1%}"),
            ("mfu_bound", "at the floor: of ceiling", "{:.1%}"),
            ("share_of_bound", "step / bound", "{:.1%}"),
        ],
    ),
    "width_scaling": (
        "The VQA train step at larger widths: utilisation as its matmuls grow",
        [
            ("width", "width", "{}"),
            ("mlp_dim", "MLP", "{}"),
            ("parameters", "parameters", "{:,}"),
            ("step_ms", "step ms", "{:.1f}"),
            ("gflop_per_step", "GFLOP/step (XLA)", "{:.3g}"),
            ("gflops_per_s", "GFLOP/s", "{:.1f}"),
            ("ceiling_gflops_per_s", "ceiling GFLOP/s, in turns", "{:.1f}"),
            ("mfu", "of ceiling", "{:.1%}"),
        ],
    ),
    "fusion_attention": (
        "VQA fusion attention: image_text_attention against the attention it replaces, ms",
        [
            ("case", "case", "{}"),
            ("shape", "shape", "`{}`"),
            ("pass", "pass", "{}"),
            ("ours_ms", "ours", "{:.3f}"),
            ("naive_ms", "naive per question", "{:.3f}"),
            ("jax_nn_ms", "jax.nn per question", "{:.3f}"),
            ("speed_vs_naive", "ours: vs naive", "{:.2f}x"),
            ("speed_vs_jax_nn", "ours: vs jax.nn", "{:.2f}x"),
        ],
    ),
    "cached_attention": (
        "Decoder self-attention at one generated token, with the cache: ms per call",
        [
            ("case", "case", "{}"),
            ("shape", "shape", "`{}`"),
            ("ours_ms", "ours (cached)", "{:.3f}"),
            ("jax_nn_ms", "jax.nn (cached)", "{:.3f}"),
            ("einsum_ms", "einsum (cached)", "{:.3f}"),
            ("uncached_ms", "no cache: prefix recomputed", "{:.3f}"),
            ("speed_vs_jax_nn", "ours: vs jax.nn", "{:.2f}x"),
            ("speed_vs_uncached", "ours: vs no cache", "{:.2f}x"),
        ],
    ),
    "attention": (
        "Self-attention, forward and forward+backward: milliseconds per call",
        [
            ("pass", "pass", "{}"),
            ("mask", "mask", "{}"),
            ("seq_len", "L", "{}"),
            ("shape", "[B, L, H, Dh]", "`{}`"),
            ("ours_ms", "ours", "{:.3f}"),
            ("jax_nn_ms", "jax.nn", "{:.3f}"),
            ("einsum_ms", "naive einsum", "{:.3f}"),
            ("speed_vs_jax_nn", "ours: speed vs jax.nn", "{:.2f}x"),
        ],
    ),
    "pipeline": (
        "Input pipeline (grain) against the train step",
        [
            ("task", "task", "{}"),
            ("cache_mb", "cache_mb", "{}"),
            ("first_epoch_examples_per_s", "pipeline examples/s, first epoch", "{:.0f}"),
            ("pipeline_examples_per_s", "pipeline examples/s, later epochs", "{:.0f}"),
            ("step_examples_per_s", "step examples/s", "{:.0f}"),
            ("first_epoch_supply_ratio", "supply / demand, first epoch", "{:.1f}x"),
            ("supply_ratio", "supply / demand, later epochs", "{:.1f}x"),
            ("uncached_supply_ratio", "supply / demand, later epochs, cache_mb=0", "{:.1f}x"),
            ("constant_batch_step_ms", "step ms, constant batch", "{:.1f}"),
            ("real_data_step_ms", "step ms, real pipeline", "{:.1f}"),
            ("real_data_slowdown", "real-data slowdown", "{:+.1%}"),
        ],
    ),
    "vilt": (
        "Against Hugging Face ViLT (PyTorch), VQA training, same width/depth/heads",
        [
            ("model", "model", "{}"),
            ("parameters", "parameters", "{:,}"),
            ("batch", "batch", "{}"),
            ("step_ms", "step ms", "{:.1f}"),
            ("examples_per_s", "(image, question) pairs/s", "{:.0f}"),
            ("speed_vs_vilt", "speed vs ViLT", "{:.2f}x"),
        ],
    ),
    "time_to_accuracy": (
        "Validation accuracy after equal CPU budgets: mmjax, ViLT and the Relation Network",
        [
            ("candidate", "model", "{}"),
            ("cpu_budget_s", "CPU s of training", "{:.0f}"),
            ("cpu_minutes_2_cores", "= minutes of 2 cores", "{:.2f}"),
            ("steps", "steps", "{}"),
            ("train_wall_s", "wall s", "{:.0f}"),
            ("cores_used", "cores it got", "{:.2f}"),
            ("non_relational", "non-relational", "{:.1%}"),
            ("relational", "relational", "{:.1%}"),
        ],
    ),
}


def missing_fields(line: dict) -> list[str]:
    """The fields `line`'s section table needs that `line` lacks (all, for an unknown section)."""
    if line.get("section") not in SECTIONS:
        return ["section"]
    return [field for field, _, _ in SECTIONS[line["section"]][1] if field not in line]


def _cell(value, fmt: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return fmt.format(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def read_runs(folder: str) -> dict[str, list[dict]]:
    """Run name -> its lines, from every `<name>.jsonl` in `folder`, in name order.

    `quick` comes last, so that goals read the fuller runs' lines first. A line being written
    (the last, cut short) is left out.
    """
    runs = {}
    names = sorted(os.listdir(folder) if os.path.isdir(folder) else [])
    for name in sorted(names, key=lambda name: name == "quick.jsonl"):
        if not name.endswith(".jsonl"):
            continue
        lines = []
        with open(os.path.join(folder, name)) as f:
            for text in f:
                try:
                    lines.append(json.loads(text))
                except json.JSONDecodeError:
                    continue
        runs[name[: -len(".jsonl")]] = lines
    return runs


def _load(line: dict) -> float | None:
    """The 1-minute load average when `line` was measured (time-to-accuracy lines: all three)."""
    if "load_average_1min" in line:
        return line["load_average_1min"]
    return (line.get("load_average") or [None])[0]


def _header(runs: dict[str, list[dict]]) -> list[str]:
    rows = []
    for name, lines in runs.items():
        head = next((line for line in lines if line["section"] == "run"), {})
        loads = [_load(line) for line in lines if line["section"] != "run" and _load(line)]
        rows.append(
            [
                f"`runs/{name}.jsonl`",
                f"`{head.get('command', '?')}`",
                f"`{head.get('started', '?')}`",
                ", ".join(f"{x:.2f}" for x in head.get("load_average", [])),
                f"{min(loads):.2f} - {max(loads):.2f}" if loads else "n/a",
            ]
        )
    header = ["run file", "command", "started", "load average at start", "1-min load"]
    notes = [
        f"- `runs/{name}.jsonl`: {line['note']}"
        for name, lines in runs.items()
        for line in lines
        if line["section"] == "run" and line.get("note")
    ]
    return _table(header, rows) + (["", *notes] if notes else [])


def _goals(lines: list[dict]) -> list[str]:
    rows = []
    for goal in GOALS:
        own = [line for line in lines if line["section"] == goal.section]
        value = goal.value(own)
        met = "not measured" if value is None else ("yes" if goal.met(value, own) else "**no**")
        context = goal.context(own) if own else None
        measured = _cell(value, goal.fmt) + (f" ({context})" if context else "")
        rows.append([goal.text, measured, met])
    return _table(["goal", "measured", "met"], rows)


def render_page(runs: dict[str, list[dict]], notes: dict[str, str]) -> str:
    """The results page of `runs` (name -> lines): the runs, the goals, one table per section.

    Args:
      runs: run name -> its lines (a `run` line with the command, then measurements).
      notes: section -> a paragraph printed under its table (method, differences).

    Raises:
      ValueError naming a line and the fields its table needs that it lacks.
    """
    lines = []
    for name, run_lines in runs.items():
        for line in run_lines:
            if line["section"] == "run":
                continue
            if missing := missing_fields(line):
                raise ValueError(f"benchmark line {line} lacks the fields {missing} of its table")
            lines.append(dict(line, run=name))
    out = [
        "# Benchmarks",
        "",
        "Written by `python -m experiments.benchmark` from the JSON lines under `runs/`; do not "
        "edit by hand. Every number is a median of several repetitions after warm-up, and every "
        "ratio is measured side by side in one run, the candidates timed in turns. The machine: "
        "2 shared CPU cores, no GPU (none was lent to this session, so there are no bf16/GPU "
        "lines); other jobs ran alongside, so the load average is recorded with every line.",
        "",
        *_header(runs),
        "",
        "## Goals",
        "",
        # The goal column states thresholds and sizes, not measurements.
        "<!-- results-check: not measured: goal -->",
        "",
        *_goals(lines),
    ]
    for section, (title, columns) in SECTIONS.items():
        section_lines = [line for line in lines if line["section"] == section]
        if not section_lines:
            continue
        out += ["", f"## {title}", ""]
        columns = [*columns, ("run", "run", "{}"), ("load_average_1min", "load", "{:.1f}")]
        for line in section_lines:  # time-to-accuracy lines carry the 1, 5 and 15-min loads
            line["load_average_1min"] = _load(line)
        rows = [[_cell(line.get(f), fmt) for f, _, fmt in columns] for line in section_lines]
        out += _table([header for _, header, _ in columns], rows)
        if notes.get(section):
            out += ["", notes[section]]
    return "\n".join(out) + "\n"
