"""The Relation Networks reproduction's results: results.json, README.md (the page) and curves.png.

`summarize(run_dir)` reads one run's workdir (config.json, metrics.jsonl, sweep_status.json)
into its validation accuracy per question subtype at every evaluation and its test accuracy
at the end (the test split is scored only then), each with the epochs and the training
minutes behind it; `write(out_dir, runs, baseline)` writes the three files, the
runs next to the published numbers and the question-only baseline.

Training minutes are the sum of the logged step times (each log interval's steps divided by
its steps/s, the first one including compilation); evaluation time is not in them.
"""

from __future__ import annotations

import json
import math
import os

from mmjax.workdir import METRICS, Workdir, read_metrics

SUBTYPES = ("shape", "left", "top", "closest", "furthest", "count")
COLUMNS = (*SUBTYPES, "non_relational", "relational")
# The target for the multimodal transformer: the RN's published level.
TARGET = {"relational": 0.94, "non_relational": 0.99}

# Published test accuracies (fractions) on Sort-of-CLEVR; a missing key was not reported.
PUBLISHED = [
    dict(
        model="Relation Network",
        source="Santoro et al. 2017",
        numbers=dict(non_relational=0.94, relational=0.94),
        note="'above 94%' on both; no epoch count given",
    ),
    dict(
        model="CNN+MLP",
        source="Santoro et al. 2017",
        numbers=dict(relational=0.63, closest=0.523, furthest=0.523),
        note="non-relational 'at the RN's level'; 52.3% is closest and furthest together",
    ),
    dict(
        model="Relation Network",
        source="kimhc6028/relational-networks",
        numbers=dict(non_relational=0.99, relational=0.89),
        note="after 20 epochs, batch 64, Adam 1e-4, BatchNorm",
    ),
    dict(
        model="CNN+MLP",
        source="kimhc6028/relational-networks",
        numbers=dict(non_relational=0.66, relational=0.66),
        note="after 100 epochs",
    ),
]


def _records(path: str) -> list[dict]:
    """metrics.jsonl, one record per step (the last written wins: a resumed run redoes steps)."""
    by_step: dict[tuple[int, bool], dict] = {}
    try:
        records = read_metrics(path)  # leaves out a line cut short by a kill
    except FileNotFoundError:
        return []
    for record in records:
        is_train = any(k.startswith("train/") for k in record)
        by_step[(record["step"], is_train)] = record
    return [by_step[k] for k in sorted(by_step)]


def training_minutes(records: list[dict]) -> dict[int, float]:
    """Cumulative training minutes at each logged training step."""
    minutes, total, last = {}, 0.0, 0
    for record in records:
        rate = record.get("train/steps_per_sec")
        if not rate:
            continue
        total += (record["step"] - last) / rate / 60
        last = record["step"]
        minutes[record["step"]] = total
    return minutes


def _minutes_at(minutes: dict[int, float], step: int) -> float | None:
    """Training minutes at `step`, from the last logged step at or before it."""
    before = [s for s in minutes if s <= step]
    return minutes[max(before)] if before else None


def summarize(run_dir: str) -> dict:
    """One run: its config essentials and every evaluation with its epochs and minutes.

    Returns {"evals": the validation evaluations, [{"step", "epochs", "minutes", "accuracy":
    {subtype: fraction}, "overall"}], "final": the last test evaluation (at the end of the
    run) or None, "steps_per_epoch", "model", "status", "wall_minutes"}.
    """
    config = Workdir(run_dir, writer=False).read_config().to_dict()
    records = _records(os.path.join(run_dir, METRICS))
    minutes = training_minutes(records)
    steps_per_epoch = config["data"]["num_train"] / config["batch_size"]

    def evaluations(split: str) -> list[dict]:
        return [
            dict(
                step=record["step"],
                epochs=record["step"] / steps_per_epoch,
                minutes=_minutes_at(minutes, record["step"]),
                accuracy={c: record.get(f"{split}/accuracy/{c}") for c in COLUMNS},
                overall=record[f"{split}/accuracy"],
            )
            for record in records
            if f"{split}/accuracy" in record
        ]

    evals, tests = evaluations("validation"), evaluations("test")
    try:
        with open(os.path.join(run_dir, "sweep_status.json")) as f:
            status = json.load(f)
    except (OSError, json.JSONDecodeError):
        status = {}
    wall = status.get("wall_time_s")
    return dict(
        model=config["model"],
        batch_size=config["batch_size"],
        total_steps=config["total_steps"],
        steps_per_epoch=steps_per_epoch,
        status=status.get("status", "unknown"),
        wall_minutes=wall / 60 if isinstance(wall, int | float) else None,
        evals=evals,
        final=tests[-1] if tests else None,
    )


def first_reaching(evals: list[dict], target: dict[str, float]) -> dict | None:
    """The first of `evals` at or above every target accuracy, or None."""
    for ev in evals:
        if all((ev["accuracy"].get(k) or 0.0) >= v for k, v in target.items()):
            return ev
    return None


def _pct(value) -> str:
    return "" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def epochs_text(value: float) -> str:
    """Epochs to two decimals below 1 (short probes), to one above."""
    return f"{value:.2f}" if value < 1 else f"{value:.1f}"


def _minutes(value) -> str:
    return "" if value is None else f"{value:.1f}"


def _target_text(evals: list[dict]) -> str:
    hit = first_reaching(evals, TARGET)
    if hit is None:
        return "not reached"
    return f"epoch {epochs_text(hit['epochs'])}, {_minutes(hit['minutes'])} min"


def markdown(runs: list[dict], baseline: dict[str, float], meta: dict) -> str:
    """README.md: the final table, the published numbers, and each run's curve."""
    head = "| model | how the run differs from the paper | epochs | train min |"
    head += "".join(f" {c.replace('_', '-')} |" for c in COLUMNS)
    head += " reaches 94 / 99 |"
    rule = "|" + " --- |" * (len(COLUMNS) + 5)
    lines = [
        "# Relation Networks on Sort-of-CLEVR: reproduction",
        "",
        f"Written by `{meta['command']}`.",
        f"Test accuracy (%) on the {meta['num_test']} test images (20 questions each) at each "
        f"run's last evaluation, with the epochs ({meta['num_train']:,} training images each) and "
        "the training "
        "minutes of this machine behind it (evaluation excluded). 'reaches 94 / 99': the first "
        "validation evaluation with at least 94% relational and 99% non-relational accuracy.",
        "",
        head,
        rule,
    ]
    for run in runs:
        final = run["final"]
        cells = [f"{run['label']}", run["differs"]]
        if final is None:
            cells += [f"0 ({run['status']})", ""] + [""] * len(COLUMNS) + [""]
        else:
            cells += [epochs_text(final["epochs"]), _minutes(final["minutes"])]
            cells += [_pct(final["accuracy"][c]) for c in COLUMNS]
            cells.append(_target_text(run["evals"]))
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["question-only (majority)", "most frequent training answer per (colour, subtype)"]
    cells += ["", ""] + [_pct(baseline.get(c)) for c in COLUMNS] + [""]
    lines.append("| " + " | ".join(cells) + " |")
    for paper in PUBLISHED:
        cells = [f"{paper['model']}, {paper['source']}", paper["note"], "", ""]
        cells += [_pct(paper["numbers"].get(c)) for c in COLUMNS] + [""]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Learning curves (validation non-relational / relational %)", ""]
    for run in runs:
        points = ", ".join(
            f"{ev['epochs']:.2f} ep: {_pct(ev['accuracy']['non_relational'])} / "
            f"{_pct(ev['accuracy']['relational'])}"
            for ev in run["evals"]
        )
        lines.append(f"- {run['label']}: {points or 'no evaluation yet'}")
    return "\n".join(lines) + "\n"


def plot(runs: list[dict], baseline: dict[str, float], path: str) -> bool:
    """curves.png: non-relational and relational validation accuracy against epochs, per run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, key in zip(axes, ("non_relational", "relational"), strict=True):
        for run in runs:
            if run["evals"]:
                epochs = [ev["epochs"] for ev in run["evals"]]
                values = [100 * (ev["accuracy"][key] or 0.0) for ev in run["evals"]]
                ax.plot(epochs, values, marker=".", label=run["label"])
        if key in baseline:
            ax.axhline(100 * baseline[key], color="gray", ls=":", label="question-only (majority)")
        ax.axhline(100 * TARGET[key], color="black", ls="--", lw=0.8, label="target")
        ax.set(title=key.replace("_", "-"), xlabel="epochs", ylim=(0, 100), xlim=(0, None))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation accuracy (%)")
    axes[1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write(out_dir: str, runs: list[dict], baseline: dict[str, float], meta: dict) -> list[str]:
    """Writes results.json, README.md (the page) and curves.png (with matplotlib) in out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, name) for name in ("results.json", "README.md", "curves.png")]
    with open(paths[0], "w") as f:
        json.dump(
            dict(meta=meta, runs=runs, question_only_majority=baseline, published=PUBLISHED),
            f,
            indent=1,
        )
    with open(paths[1], "w") as f:
        f.write(markdown(runs, baseline, meta))
    if not plot(runs, baseline, paths[2]):
        paths.pop()
    return paths
