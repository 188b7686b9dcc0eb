"""The goals of the benchmarks issue, each read from the benchmark's JSON lines.

A goal says exactly what was compared; its value comes from lines of one run (a section's
first line that holds it: run files are read in name order), and a goal with no line to read
is "not measured", never met.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Goal:
    """One target: a value read from the lines of a section, and its threshold.

    Attributes:
      text: what is asked and what was compared, in words.
      section: the section whose lines hold the value.
      value: lines of that section -> the value, or None when none of the lines hold it.
      met: (value, lines of that section) -> whether the target is reached.
      fmt: format of the value.
      context: lines of that section -> a few words shown after the value, or None.
    """

    text: str
    section: str
    value: Callable[[list[dict]], float | None]
    met: Callable[[float, list[dict]], bool]
    fmt: str
    context: Callable[[list[dict]], str | None] = lambda lines: None


def first(lines: list[dict], field: str, **where) -> float | None:
    """`field` of the first line whose fields equal `where` and that holds it, else None."""
    for line in lines:
        if all(line.get(k) == v for k, v in where.items()) and line.get(field) is not None:
            return line[field]
    return None


def _least(lines: list[dict], field: str) -> float | None:
    values = [line[field] for line in lines if line.get(field) is not None]
    return min(values, default=None)


def _first_budget(lines: list[dict], candidate: str, field: str, target: float):
    """Least `cpu_minutes_2_cores` at which `candidate`'s `field` reached `target`, else None."""
    hits = [
        line["cpu_minutes_2_cores"]
        for line in lines
        if line["candidate"] == candidate and line[field] >= target
    ]
    return min(hits, default=None)


RIVALS = {"vilt": "ViLT", "relation_network": "RN"}


def _beats_rivals(minutes: float, lines: list[dict]) -> bool:
    """Whether mmjax reached 94% relational before every rival measured reached 60%."""
    rivals = [c for c in RIVALS if any(line["candidate"] == c for line in lines)]
    reached = [_first_budget(lines, c, "relational", 0.6) for c in rivals]
    return len(rivals) == len(RIVALS) and all(r is None or minutes < r for r in reached)


def _rivals_context(lines: list[dict]) -> str | None:
    parts = []
    for candidate, name in RIVALS.items():
        own = [line for line in lines if line["candidate"] == candidate]
        if not own:
            parts.append(f"{name}: not measured")
            continue
        at = _first_budget(lines, candidate, "relational", 0.6)
        best = max(line["relational"] for line in own)
        longest = max(line["cpu_minutes_2_cores"] for line in own)
        parts.append(
            f"{name}: at {at:.2f} min"
            if at is not None
            else f"{name}: not by {longest:.2f} min, best {best:.1%}"
        )
    return "; ".join(parts)


def _widest_context(lines: list[dict]) -> str | None:
    widest = [line["mfu"] for line in lines if line["width"] == 512]
    return "runs: " + ", ".join(f"{v:.1%}" for v in widest) if widest else None


def _weakest_task(lines: list[dict]) -> str | None:
    if not lines:
        return None
    weakest = min(lines, key=lambda line: line["share_of_bound"])
    tasks = dict.fromkeys(line["task"] for line in lines)  # in order, once each
    return "least: " + weakest["task"] + "; tasks: " + ", ".join(tasks)


def _vqa_floor(lines: list[dict]) -> str | None:
    mfu, bound = first(lines, "mfu", task="vqa"), first(lines, "mfu_bound", task="vqa")
    if mfu is None:
        return None
    return f"step {mfu:.1%} of the ceiling, its matmuls alone {bound:.1%}"


GOALS = [
    Goal(
        "time to accuracy: mmjax's default VQA model reaches 94% relational validation "
        "accuracy at a smaller CPU budget (minutes of 2 cores) than HF ViLT or the Relation "
        "Network reaches 60%",
        "time_to_accuracy",
        lambda lines: _first_budget(lines, "mmjax", "relational", 0.94),
        _beats_rivals,
        "mmjax: at {:.2f} min",
        _rivals_context,
    ),
    Goal(
        "equal work: our VQA model as one stream per (image, question) pair, as ViLT runs, "
        ">= 1.0x ViLT's training pairs/s (the framework alone)",
        "vilt",
        lambda lines: first(
            lines, "speed_vs_vilt", model="mmjax VQATransformer, single stream per pair"
        ),
        lambda v, lines: v >= 1.0,
        "{:.2f}x",
    ),
    Goal(
        "MFU: the default VQA train step >= 80% of the utilisation its own matmuls allow "
        "(timed alone, in turns with the step)",
        "matmul_floor",
        lambda lines: first(lines, "share_of_bound", task="vqa"),
        lambda v, lines: v >= 0.8,
        "{:.1%}",
        _vqa_floor,
    ),
    Goal(
        "MFU: the width-512 VQA step >= 60% of the 2048^2 matmul's GFLOP/s, in each of three runs",
        "width_scaling",
        lambda lines: _least([line for line in lines if line["width"] == 512], "mfu"),
        lambda v, lines: v >= 0.6 and sum(line["width"] == 512 for line in lines) >= 3,
        "{:.1%}",
        _widest_context,
    ),
    Goal(
        "MFU: every task's default step >= 80% of the utilisation its matmuls allow",
        "matmul_floor",
        lambda lines: _least(lines, "share_of_bound"),
        lambda v, lines: v >= 0.8,
        "{:.1%}",
        _weakest_task,
    ),
    Goal(
        "attention: image_text_attention at least as fast as the naive per-question attention "
        "it replaces (image keys copied to each question, masked einsum softmax), in every "
        "case, forward and forward+backward",
        "fusion_attention",
        lambda lines: _least(lines, "speed_vs_naive"),
        lambda v, lines: v >= 1.0,
        "least {:.2f}x",
    ),
    Goal(
        "attention: image_text_attention at least as fast as jax.nn.dot_product_attention over "
        "the same per-question keys and mask, in every case, forward and forward+backward",
        "fusion_attention",
        lambda lines: _least(lines, "speed_vs_jax_nn"),
        lambda v, lines: v >= 1.0,
        "least {:.2f}x",
    ),
    Goal(
        "attention: the decoder's cached self-attention at a generated token faster than "
        "recomputing the prefix's causal self-attention, in every case",
        "cached_attention",
        lambda lines: _least(lines, "speed_vs_uncached"),
        lambda v, lines: v >= 1.0,
        "least {:.2f}x",
    ),
    Goal(
        "pipeline: first-epoch supply >= 10x the VQA step's demand (every record read and "
        "decoded: what the cache cannot help)",
        "pipeline",
        lambda lines: first(lines, "first_epoch_supply_ratio", task="vqa"),
        lambda v, lines: v >= 10.0,
        "{:.1f}x",
    ),
    Goal(
        "pipeline: later-epoch supply >= 10x the VQA step's demand with data.cache_mb=0",
        "pipeline",
        lambda lines: first(lines, "uncached_supply_ratio", task="vqa"),
        lambda v, lines: v >= 10.0,
        "{:.1f}x",
    ),
    Goal(
        "pipeline: the VQA step fed by the real pipeline within 5% of the constant-batch step",
        "pipeline",
        lambda lines: first(lines, "real_data_slowdown", task="vqa"),
        lambda v, lines: v <= 0.05,
        "{:+.1%}",
    ),
]
