"""The autoencoder results page's tables, printed from its runs' metrics.jsonl (issue 26).

  python -m experiments.autoencoder_tables [--runs=experiments/results/autoencoder/runs]

Prints, as Markdown: the validation side-by-side table (every validation evaluation of every
run under --runs, with the validation probe where the run has one), the final run's images
decoded at the mode and as the expected image on validation (probes/decoding_final.json), and
the test table of the runs `0_before`, `1_dropout_0.25` and `2_final`. A figure missing from
a run (the run before issue 26 had no parser of drawn images and no validation probe) is
shown as "-".
"""

from __future__ import annotations

import argparse
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = os.path.join(HERE, "results", "autoencoder", "runs")

VALIDATION_COLUMNS = (
    ("joint PSNR (dB)", "validation/image_joint_psnr", 1, False),
    ("image->text exact match", "validation/text_from_image_exact_match", 1, True),
    ("text->text exact match", "validation/text_from_text_exact_match", 1, True),
    ("text->image objects in order", "validation_drawn/from_text_objects_in_order", 1, True),
    ("image->image objects in order", "validation_drawn/from_image_objects_in_order", 1, True),
    ("probe on z of the image", "validation_probe/z_from_image_accuracy", 1, True),
    ("probe, untrained encoder", "validation_probe/z_random_from_image_accuracy", 1, True),
)

TEST_ROWS = (
    ("image PSNR (dB), from image + text", "test/image_joint_psnr", 2, False),
    ("image PSNR (dB), from the image alone", "test/image_from_image_psnr", 2, False),
    (
        "text exact match, from the image alone (image->text)",
        "test/text_from_image_exact_match",
        1,
        True,
    ),
    ("text token accuracy, from the image alone", "test/text_from_image_token_accuracy", 1, True),
    ("text CIDEr-D, from the image alone", "test/text_from_image_cider_d", 3, False),
    ("text exact match, from the text alone", "test/text_from_text_exact_match", 1, True),
    ("text exact match, from image + text", "test/text_joint_exact_match", 1, True),
    (
        "objects drawn in order, from the text alone (text->image)",
        "test_drawn/from_text_objects_in_order",
        1,
        True,
    ),
    ("colours drawn at all, from the text alone", "test_drawn/from_text_colours_drawn", 1, True),
    (
        "objects drawn in order, from the image alone",
        "test_drawn/from_image_objects_in_order",
        1,
        True,
    ),
    ("objects drawn in order, from image + text", "test_drawn/joint_objects_in_order", 1, True),
    ("image MSE, from the text alone", "test/image_from_text_mse", 4, False),
    ("linear probe on z of the image alone", "probe/z_from_image_accuracy", 1, True),
    (
        "  shape / left / top",
        ("probe/z_from_image_shape", "probe/z_from_image_left", "probe/z_from_image_top"),
        1,
        True,
    ),
    ("linear probe, untrained encoder (seed 1)", "probe/z_random_from_image_accuracy", 1, True),
    ("linear probe, majority class", "probe/majority_accuracy", 1, True),
)


def read_metrics(path: str) -> list[dict]:
    """The records of one metrics.jsonl, in order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _format(value, decimals: int, percent: bool) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.{decimals}f}%" if percent else f"{value:.{decimals}f}"


def _last(records: list[dict], key: str):
    values = [r[key] for r in records if key in r]
    return values[-1] if values else None


def validation_table(runs: str) -> str:
    """One row per validation evaluation of each run (runs sorted by folder name)."""
    header = ["run", "step"] + [name for name, *_ in VALIDATION_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name in sorted(os.listdir(runs)):
        records = read_metrics(os.path.join(runs, name, "metrics.jsonl"))
        evals = [r for r in records if "validation/num_examples" in r]
        for i, record in enumerate(evals):
            cells = [name, str(record["step"])]
            for _, key, decimals, percent in VALIDATION_COLUMNS:
                value = record.get(key)
                if value is None and key.startswith("validation_probe/") and i == len(evals) - 1:
                    value = _last(records, key)  # the probe runs once, after the last step
                cells.append(_format(value, decimals, percent))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def decoding_table(path: str) -> str:
    """Mode against expected decoding of the final run's images (probes/decoding.py's JSON)."""
    with open(path) as f:
        scores = json.load(f)
    lines = [
        "| z from | decoded | PSNR (dB) | MSE | objects in order |",
        "| --- | --- | --- | --- | --- |",
    ]
    for source in ("joint", "from_image", "from_text"):
        for how in ("mode", "expected"):
            key = f"{source}_{how}"
            psnr = _format(scores[f"{key}_psnr"], 1, False)
            mse = _format(scores[f"{key}_mse"], 4, False)
            order = _format(scores[f"{key}_objects_in_order"], 1, True)
            lines.append(f"| {source} | {how} | {psnr} | {mse} | {order} |")
    return "\n".join(lines)


def test_table(
    runs: str, names: tuple[str, ...] = ("0_before", "1_dropout_0.25", "2_final")
) -> str:
    """The test figures of the runs `names` (each run's last record of each), side by side."""
    records = [read_metrics(os.path.join(runs, name, "metrics.jsonl")) for name in names]
    lines = [
        "| test (1,000 scenes) | " + " | ".join(names) + " |",
        "|" + " --- |" * (1 + len(names)),
    ]
    for label, keys, decimals, percent in TEST_ROWS:
        keys = keys if isinstance(keys, tuple) else (keys,)
        cells = [
            " / ".join(_format(_last(run, k), decimals, percent) for k in keys) for run in records
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """Parses the flags and prints both tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=RUNS)
    args = parser.parse_args()
    print(validation_table(args.runs))
    print()
    decoding = os.path.join(os.path.dirname(args.runs), "probes", "decoding_final.json")
    if os.path.exists(decoding):
        print(decoding_table(decoding))
        print()
    if os.path.exists(os.path.join(args.runs, "2_final")):
        print(test_table(args.runs))


if __name__ == "__main__":
    main()
