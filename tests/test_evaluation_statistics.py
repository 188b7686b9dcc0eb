"""Bootstrap intervals cover a known mean at the nominal rate (clusters resampled whole), the
paired comparison finds a planted difference and none between identical runs, disparity
groups add up to the overall metric, and the counterfactual probe's outcomes are counted."""

import numpy as np
import pytest

from mmjax import compare
from mmjax.evaluators import build_evaluator
from mmjax.evaluators.bootstrap import IntervalOptions, bootstrap_intervals, weighted_mean
from mmjax.evaluators.examples import ExampleTable, example_file, load_table, save_table
from mmjax.evaluators.groups import encode_values


def mean_statistic(values):
    return lambda weights: {"mean": weighted_mean(values, weights)}


def clustered_sample(rng, clusters: int, per_cluster: int, spread: float) -> tuple:
    """Bernoulli outcomes whose rate varies by cluster around 0.7 (the true mean)."""
    rates = np.clip(0.7 + spread * rng.uniform(-1, 1, clusters), 0, 1)
    ids = np.repeat(np.arange(clusters), per_cluster)
    return (rng.uniform(size=ids.size) < rates[ids]).astype(float), ids


def coverage(rng, repetitions: int, cluster_aware: bool) -> float:
    hits = 0
    options = IntervalOptions(samples=400, confidence=0.95, seed=1)
    for _ in range(repetitions):
        values, ids = clustered_sample(rng, clusters=40, per_cluster=10, spread=0.3)
        clusters = ids if cluster_aware else np.arange(values.size)
        low, high = bootstrap_intervals(mean_statistic(values), clusters, options)["mean"]
        hits += low <= 0.7 <= high
    return hits / repetitions


def test_intervals_cover_the_true_mean_at_about_the_nominal_rate():
    # 200 seeded repetitions of 40 images x 10 questions, the images' rates differing.
    rate = coverage(np.random.default_rng(0), 200, cluster_aware=True)
    assert 0.90 <= rate <= 0.99
    # Treating the questions as independent undercovers such data: why images are resampled.
    naive = coverage(np.random.default_rng(0), 200, cluster_aware=False)
    assert naive < rate - 0.1


def test_interval_brackets_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(3)
    values, ids = clustered_sample(rng, 50, 4, 0.2)
    options = IntervalOptions(samples=300, confidence=0.9, seed=7)
    first = bootstrap_intervals(mean_statistic(values), ids, options)["mean"]
    again = bootstrap_intervals(mean_statistic(values), ids, options)["mean"]
    assert first == again
    assert first[0] < values.mean() < first[1]
    with pytest.raises(ValueError, match="confidence"):
        IntervalOptions(samples=10, confidence=1.5)


def table(correct, clusters, groups=None) -> ExampleTable:
    return ExampleTable(
        np.asarray(clusters), {"accuracy": np.asarray(correct, float)}, groups or {}
    )


def planted_runs(seed=0):
    """Run A right on ~70% of 1000 questions of 100 images; B also right on 40% of A's misses."""
    rng = np.random.default_rng(seed)
    clusters = np.repeat(np.arange(100), 10)
    a = rng.uniform(size=1000) < 0.7
    b = a | ((rng.uniform(size=1000) < 0.4) & ~a)
    return table(a, clusters), table(b, clusters)


def test_paired_comparison_finds_a_planted_difference():
    a, b = planted_runs()
    (row,) = compare.paired_comparison(a, b, samples=2000, seed=0)
    assert row["diff"] == pytest.approx(b.scores["accuracy"].mean() - a.scores["accuracy"].mean())
    assert row["diff"] > 0.08
    assert 0 < row["low"] < row["diff"] < row["high"]
    assert row["p"] < 0.01


def test_paired_comparison_finds_nothing_between_identical_runs():
    a, _ = planted_runs()
    (row,) = compare.paired_comparison(a, a, samples=500)
    assert (row["diff"], row["low"], row["high"], row["p"]) == (0.0, 0.0, 0.0, 1.0)


def test_compare_command_reads_workdirs_and_refuses_different_examples(tmp_path, capsys):
    a, b = planted_runs()
    save_table(example_file(str(tmp_path / "a"), "test", 100), a)
    save_table(example_file(str(tmp_path / "b"), "test", 200), b)
    assert load_table(example_file(str(tmp_path / "a"), "test", 100)).clusters.size == 1000
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b"), "--samples=300"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "(step 100)" in out and "(step 200)" in out
    other = table(np.ones(1000), np.repeat(np.arange(1000), 1))
    save_table(example_file(str(tmp_path / "c"), "test", 1), other)
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "c")]) == 2
    assert "scored different examples" in capsys.readouterr().err
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "missing")]) == 2
    assert "no per-example scores" in capsys.readouterr().err


def classification_batches(rng, images=30, questions=4, groups=("red", "green", "blue")):
    """Batches of 10 images x `questions`; label and prediction agree more for "red"."""
    batches = []
    for start in range(0, images, 10):
        colour = rng.choice(groups, size=(10, questions))
        label = rng.integers(0, 3, size=(10, questions)).astype(np.int32)
        right = rng.uniform(size=label.shape) < np.where(colour == "red", 0.9, 0.5)
        prediction = np.where(right, label, (label + 1) % 3).astype(np.int32)
        label[-1, -1] = -1  # one padding question
        mask = np.ones(10, bool)
        mask[-1] = start + 10 < images  # the last batch's last image is padding
        codes = np.stack([encode_values(row) for row in colour])
        batch = {"_mask": mask, "answer": label, "group/color": codes}
        batches.append((batch, {"answer": prediction}))
    return batches


def test_disparity_groups_add_up_to_the_overall_metric():
    batches = classification_batches(np.random.default_rng(0))
    evaluator = build_evaluator(
        "disparity",
        dict(
            type="disparity",
            base=dict(type="classification", label_key="answer", prediction_key="answer"),
            attributes=["color"],
            bootstrap_samples=200,
        ),
        {"num_classes": 3},
    )
    metrics = evaluator.evaluate(batches)
    overall = build_evaluator(
        "plain",
        dict(type="classification", label_key="answer", prediction_key="answer"),
        {"num_classes": 3},
    ).evaluate(batches)["accuracy"]
    colours = ("red", "green", "blue")
    counts = {c: metrics[f"accuracy/color/{c}.count"] for c in colours}
    weighted = sum(counts[c] * metrics[f"accuracy/color/{c}"] for c in colours)
    # 29 real images x 4 questions, less the padding question of the first two batches (the
    # third's is on the padding image).
    assert sum(counts.values()) == 29 * 4 - 2
    assert weighted / sum(counts.values()) == pytest.approx(metrics["accuracy"])
    assert metrics["accuracy"] == pytest.approx(overall)
    values = [metrics[f"accuracy/color/{c}"] for c in colours]
    assert metrics["accuracy/color.gap"] == pytest.approx(max(values) - min(values))
    assert metrics["accuracy/color.ratio"] == pytest.approx(min(values) / max(values))
    assert max(values) == metrics["accuracy/color/red"]
    for c in colours:
        low, high = metrics[f"accuracy/color/{c}.ci_low"], metrics[f"accuracy/color/{c}.ci_high"]
        assert low <= metrics[f"accuracy/color/{c}"] <= high


def test_disparity_names_a_missing_attribute():
    batches = classification_batches(np.random.default_rng(1))
    evaluator = build_evaluator(
        "disparity",
        dict(
            type="disparity",
            base=dict(type="classification", label_key="answer", prediction_key="answer"),
            attributes=["shape"],
        ),
        {"num_classes": 3},
    )
    with pytest.raises(ValueError, match="shape"):
        evaluator.evaluate(batches)


def test_counterfactual_outcomes_on_changed_answers():
    batch = {
        "_mask": np.ones(1, bool),
        "answer": np.asarray([[1, 2, 3, 4, -1]], np.int32),  # after the swap
        "original_answer": np.asarray([[1, 5, 3, 6, -1]], np.int32),  # before it
    }
    # Unchanged right; changed: follows the image; unchanged wrong; changed: keeps the old one.
    predicted = {"answer": np.asarray([[1, 2, 0, 6, 0]], np.int32)}
    metrics = build_evaluator("swap", dict(type="counterfactual")).evaluate([(batch, predicted)])
    assert metrics["count"] == 4
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["changed"] == pytest.approx(0.5)
    assert metrics["follows_image"] == pytest.approx(0.5)
    assert metrics["keeps_original"] == pytest.approx(0.5)


def test_caption_metrics_with_intervals_equal_the_corpus_scores():
    from mmjax.evaluators.captioning import CaptionEvaluator, caption_metrics

    class Words:
        def decode(self, ids):
            return " ".join(f"w{i}" for i in ids if i > 0)

    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 6, size=(12, 5)).astype(np.int32)
    references = rng.integers(0, 6, size=(12, 3, 5)).astype(np.int32)
    references[:, :, 0] = rng.integers(1, 6, size=(12, 3))  # every reference non-empty
    batch = {"_mask": np.ones(12, bool), "captions": references}
    evaluator = CaptionEvaluator(Words(), java=False, bootstrap_samples=200)
    metrics = evaluator.evaluate([(batch, {"tokens": tokens})])
    words = Words()
    expected = caption_metrics(
        {i: [words.decode(r) for r in references[i]] for i in range(12)},
        {i: words.decode(tokens[i]) for i in range(12)},
        java=False,
    )
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-12), name
        assert metrics[f"{name}.ci_low"] <= value + 1e-12 <= metrics[f"{name}.ci_high"] + 2e-12
    table = evaluator.last_examples
    assert table.scores["cider_d"].mean() == pytest.approx(expected["cider_d"])


def test_gap_permutation_p_value_tells_a_planted_disparity_from_noise():
    from mmjax.evaluators.disparity import permutation_p_value

    rng = np.random.default_rng(0)
    groups = np.asarray(["a", "b", "c", "d"])[rng.integers(0, 4, 2000)]
    clusters = np.arange(2000) // 10
    fair = (rng.uniform(size=2000) < 0.8).astype(float)
    eligible = np.ones(4, bool)
    # No disparity: the observed gap is typical of shuffled labels (the gap itself is not 0).
    assert permutation_p_value(fair, groups, clusters, eligible, 500, 0) > 0.05
    unfair = np.where(groups == "d", rng.uniform(size=2000) < 0.7, fair).astype(float)
    assert permutation_p_value(unfair, groups, clusters, eligible, 500, 0) < 0.01
    # An image-level attribute is shuffled between images, not questions.
    image_groups = np.asarray(["x", "y"])[(clusters // 50) % 2]
    p = permutation_p_value(fair, image_groups, clusters, np.ones(2, bool), 200, 0)
    assert 0 < p <= 1


def test_evaluation_page_reads_the_last_evaluation_of_each_run(tmp_path):
    import json

    from mmjax import evaluation_page

    run = tmp_path / "run"
    run.mkdir()
    evals = {"test": {"type": "classification", "split": "test"}}
    (run / "config.json").write_text(json.dumps({"task": "vqa", "evals": evals, "seed": 0}))
    records = [
        {"step": 10, "test/accuracy": 0.5, "test/stale": 0.1, "train/loss": 1.0},
        {
            "step": 20,
            "test/accuracy": 0.75,
            "test/accuracy.ci_low": 0.7,
            "test/accuracy.ci_high": 0.8,
            "test/accuracy/count": 0.9,
            "test/count": 40.0,
        },
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    values = evaluation_page.final_values(str(run))
    assert values["test/accuracy"] == 0.75 and "test/stale" not in values
    assert values["train/loss"] == 1.0
    out = tmp_path / "page.md"
    assert evaluation_page.main([f"A={run}", f"--out={out}"]) == 0
    page = out.read_text()
    assert "| accuracy | 75.0 [70.0, 80.0] |" in page
    assert "| accuracy/count | 90.0 |" in page  # a slice named "count", not a size
    assert "count: 40" in page
