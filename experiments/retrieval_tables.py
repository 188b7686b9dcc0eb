"""The tables of experiments/results/retrieval/README.md, from its committed run files.

  python -m experiments.retrieval_tables [--runs=experiments/results/retrieval/runs]

Each run folder holds a training run's config.json and metrics.jsonl. Prints, in Markdown:
the validation table (each run's Recall@1 both ways and the "from left to right" captions'
text->image R@1 at the evaluations of `--steps`), and for runs that scored the test split, the
test table (R@1/5/10 with 95% intervals both ways, and per caption wording).
"""

from __future__ import annotations

import argparse
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = os.path.join(HERE, "results", "retrieval", "runs")
SLOTS = ("listing", "there_is", "image_shows", "left_to_right", "counts")


def records(run: str) -> list[dict]:
    """The run's metrics.jsonl records, in order."""
    with open(os.path.join(run, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def at_step(run: str, prefix: str, step: int) -> dict:
    """The `prefix` evaluation's metrics at `step` (without the prefix), {} if none."""
    for record in records(run):
        if record.get("step") == step and f"{prefix}/i2t_r1" in record:
            return {k[len(prefix) + 1 :]: v for k, v in record.items() if k.startswith(prefix)}
    return {}


def pct(values: dict, key: str, interval: bool = False) -> str:
    """`key` as a percentage with one decimal ("-" when absent), with its interval if asked."""
    if key not in values:
        return "-"
    text = f"{100 * values[key]:.1f}"
    if interval and f"{key}.ci_low" in values:
        text += f" [{100 * values[key + '.ci_low']:.1f}, {100 * values[key + '.ci_high']:.1f}]"
    return text


def validation_table(runs: list[str], steps: list[int]) -> list[str]:
    """One row per (run, step): validation i2t R@1, t2i R@1, and left-to-right t2i R@1."""
    lines = [
        "| run | step | i2t R@1 | t2i R@1 | left-to-right t2i R@1 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        for step in steps:
            v = at_step(run, "validation", step)
            if v:
                row = [os.path.basename(run), str(step)]
                row += [pct(v, "i2t_r1"), pct(v, "t2i_r1"), pct(v, "t2i_r1/left_to_right")]
                lines.append("| " + " | ".join(row) + " |")
    return lines


def test_table(run: str) -> list[str]:
    """The final test Recall@K with intervals, both ways, overall and per caption wording."""
    last = [r for r in records(run) if "test/i2t_r1" in r]
    if not last:
        return []
    v = {k[5:]: val for k, val in last[-1].items() if k.startswith("test/")}
    lines = [
        f"{os.path.basename(run)} (step {last[-1]['step']}):",
        "",
        "| captions | direction | R@1 | R@5 | R@10 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for slot in ("",) + SLOTS:
        for direction in ("i2t", "t2i"):
            keys = [f"{direction}_r{k}" + (f"/{slot}" if slot else "") for k in (1, 5, 10)]
            if keys[0] in v:
                cells = [pct(v, key, interval=True) for key in keys]
                lines.append(f"| {slot or 'all'} | {direction} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    """Prints the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=RUNS)
    parser.add_argument("--steps", default="500,1000,1500,2000")
    args = parser.parse_args()
    runs = sorted(
        os.path.join(args.runs, name)
        for name in os.listdir(args.runs)
        if os.path.exists(os.path.join(args.runs, name, "metrics.jsonl"))
    )
    print("\n".join(validation_table(runs, [int(s) for s in args.steps.split(",")])))
    for run in runs:
        table = test_table(run)
        if table:
            print("\n" + "\n".join(table))


if __name__ == "__main__":
    main()
