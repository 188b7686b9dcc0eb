r"""A Markdown page of runs' final evaluations, each metric with its interval, and disparity.

  python -m mmjax.evaluation_page --out=mmjax/projects/sort_of_clevr/results/evaluation/README.md \
      --title="Evaluation of the default runs" \
      "VQA=runs/vqa" "Captioning=runs/caption" "Retrieval=runs/retrieval" \
      [--compare="VQA=runs/vqa,VQA seed 1=runs/vqa_seed1"] [--compare_eval=test]

For each run (NAME=WORKDIR) it reads config.json and metrics.jsonl, takes each evaluation's
last values, and writes one section per evaluation of config.evals, laid out by its type:
the metrics with their intervals ("98.7 [98.2, 99.1]"), a disparity evaluation as one table
per attribute (each group's value and interval and its size, then the gap and the ratio), a
counterfactual probe as its outcomes. With --compare, the paired bootstrap of two runs'
per-example scores (`mmjax.compare`) on evaluation --compare_eval, overall and per group of
each attribute of the examples. Values in percent, except CIDEr-D (0-10). Nothing is
computed from the model here: every number comes from the run files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from mmjax.evaluators.bootstrap import CI_HIGH, CI_LOW
from mmjax.workdir import read_metrics

UNSCALED = ("cider_d",)  # reported on their own scale, not as a percentage
SKIP = ("seconds",)
COUNTS = ("count", "num_examples")  # sizes, listed under a table, not in it


def final_values(workdir: str) -> dict[str, float]:
    """Each evaluation's metrics from its last record in the workdir's metrics.jsonl.

    A record replaces all earlier values of the evaluations (first name parts) it holds, so a
    metric an older evaluation had and the last one has not is dropped.
    """
    by_prefix: dict[str, dict[str, float]] = {}
    for record in read_metrics(workdir):
        fresh: dict[str, dict[str, float]] = {}
        for key, value in record.items():
            if key != "step" and value is not None:
                fresh.setdefault(key.split("/")[0], {})[key] = value
        by_prefix.update(fresh)
    return {k: v for values in by_prefix.values() for k, v in values.items()}


def run_config(workdir: str) -> dict:
    """The run's config.json as a dict."""
    with open(os.path.join(workdir, "config.json")) as f:
        return json.load(f)


def fmt(values: dict, key: str) -> str:
    """`key`'s value, with its interval when there is one: "98.7 [98.2, 99.1]"."""
    if key not in values:
        return "-"
    parts = {part.split(".")[0] for part in key.split("/")}
    ratio = key.endswith(".ratio")  # a fraction whatever the metric's scale
    scale = 1.0 if parts & set(UNSCALED) and not ratio else 100.0
    digits = 2 if scale == 1.0 else 1
    text = f"{scale * values[key]:.{digits}f}"
    if key + CI_LOW in values:
        low, high = scale * values[key + CI_LOW], scale * values[key + CI_HIGH]
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def _is_value(key: str) -> bool:
    return not key.endswith((CI_LOW, CI_HIGH, ".count")) and key.split("/")[-1] not in SKIP


def _is_count(key: str) -> bool:
    # An evaluation's own sizes ("test/count"), not a slice named "count" ("test/accuracy/count").
    last = key.split("/")[-1]
    return key.count("/") == 1 and (last in COUNTS or last.endswith("_queries"))


def metrics_table(values: dict, prefix: str) -> list[str]:
    """A two-column table of every metric under `prefix` (an evaluation name) but counts."""
    keys = [k for k in values if k.startswith(prefix + "/") and _is_value(k)]
    counts = [k for k in keys if _is_count(k)]
    keys = [k for k in keys if not _is_count(k)]
    lines = ["| metric | value [95% interval] |", "| --- | --- |"]
    lines += [f"| {k[len(prefix) + 1 :]} | {fmt(values, k)} |" for k in keys]
    if counts:
        lines += ["", ", ".join(f"{k[len(prefix) + 1 :]}: {values[k]:,.0f}" for k in counts)]
    return lines


def disparity_tables(values: dict, prefix: str, attributes: list[str]) -> list[str]:
    """Per score and attribute: each group's value and size, then gap and ratio."""
    scores = list(  # in the evaluator's order
        dict.fromkeys(
            k.split("/")[1] for k in values if k.startswith(prefix + "/") and k.count("/") >= 3
        )
    )
    lines = []
    for score in scores:
        lines += [f"{score} overall: {fmt(values, f'{prefix}/{score}')}", ""]
        for attribute in attributes:
            head = f"{prefix}/{score}/{attribute}/"
            groups = sorted(k[len(head) :] for k in values if k.startswith(head) and _is_value(k))
            if not groups:
                continue
            lines += [f"| {attribute} | {score} [95% interval] | examples |", "| --- | --- | --- |"]
            for group in groups:
                count = values.get(f"{head}{group}.count", float("nan"))
                lines.append(f"| {group} | {fmt(values, head + group)} | {count:,.0f} |")
            gap = f"{prefix}/{score}/{attribute}.gap"
            ratio = f"{prefix}/{score}/{attribute}.ratio"
            summary = f"gap (best - worst): {fmt(values, gap)}; ratio (worst / best, %): "
            summary += fmt(values, ratio)
            if gap + "_p" in values:
                summary += f"; permutation p-value of the gap: {values[gap + '_p']:.3f}"
            lines += ["", summary, ""]
    return lines


def run_section(name: str, workdir: str) -> list[str]:
    """The section of one run: each evaluation of its config, laid out by type."""
    config, values = run_config(workdir), final_values(workdir)
    lines = [
        f"## {name}",
        "",
        f"Run files: `{workdir}`; config `{config.get('task')}` task, "
        f"{config.get('total_steps', '?')} steps, seed {config.get('seed')}.",
        "",
    ]
    for eval_name, ev in config.get("evals", {}).items():
        lines += [f"### {eval_name}: {ev['type']} on `{ev['split']}`", ""]
        if ev["type"] == "disparity":
            base = ev["base"]["type"]
            lines += [f"Base evaluator: {base}; groups by {', '.join(ev['attributes'])}.", ""]
            lines += disparity_tables(values, eval_name, list(ev["attributes"]))
        else:
            lines += metrics_table(values, eval_name) + [""]
    return lines


def comparison_section(a: tuple[str, str], b: tuple[str, str], eval_name: str) -> list[str]:
    """The paired bootstrap of two runs on `eval_name`, overall and per group."""
    from mmjax import compare

    table_a, step_a = compare.load_run(a[1], eval_name, None)
    table_b, step_b = compare.load_run(b[1], eval_name, None)
    compare.check_same_examples(table_a, table_b)
    lines = [
        f"## Paired comparison: {b[0]} - {a[0]} on `{eval_name}`",
        "",
        f"`python -m mmjax.compare {a[1]} {b[1]} --eval={eval_name}` (steps {step_a} and "
        f"{step_b}; {len(table_a):,} examples; 10,000 resamples of the images, 2,000 for the "
        "groups, each group's rows by `--by=<attribute>`):",
        "",
        "```",
        compare.format_rows(compare.paired_comparison(table_a, table_b), 0.95, None),
    ]
    for attribute in sorted(table_a.groups):
        rows = compare.paired_comparison(table_a, table_b, samples=2000, by=attribute)
        lines += ["", compare.format_rows([r for r in rows if r["group"]], 0.95, attribute)]
    return lines + ["```", ""]


def main(argv=None) -> int:
    """Entry point (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m mmjax.evaluation_page")
    parser.add_argument("runs", nargs="+", help="NAME=WORKDIR")
    parser.add_argument("--out", required=True)
    parser.add_argument("--title", default="Evaluation")
    parser.add_argument("--compare", default=None, help="NAME=WORKDIR,NAME=WORKDIR")
    parser.add_argument("--compare_eval", default="test")
    parser.add_argument("--intro", default="", help="a Markdown file to put under the title")
    args = parser.parse_args(argv)
    runs = [tuple(item.split("=", 1)) for item in args.runs]
    for name, workdir in runs:
        if not os.path.isfile(os.path.join(workdir, "config.json")):
            print(f"mmjax.evaluation_page: {name}: no run at {workdir}", file=sys.stderr)
            return 2
    lines = [f"# {args.title}", ""]
    if args.intro:
        with open(args.intro) as f:
            lines += [f.read().strip(), ""]
    for name, workdir in runs:
        lines += run_section(name, workdir)
    if args.compare:
        a, b = (tuple(item.split("=", 1)) for item in args.compare.split(","))
        lines += comparison_section(a, b, args.compare_eval)
    with open(args.out, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
