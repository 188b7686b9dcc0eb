"""experiments.retrieval_tables: the results page's rows come from the runs' metrics.jsonl."""

import json

from experiments import retrieval_tables


def _run(tmp_path, name, records):
    run = tmp_path / name
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(run)


def test_validation_rows_at_the_asked_steps_and_the_last_test_record(tmp_path):
    run = _run(
        tmp_path,
        "final",
        [
            {"step": 100, "train/loss": 1.0},
            {"step": 500, "validation/i2t_r1": 0.861, "validation/t2i_r1": 0.7474},
            {
                "step": 1000,
                "validation/i2t_r1": 0.9,
                "validation/t2i_r1": 0.95,
                "validation/t2i_r1/left_to_right": 0.925,
                "test/i2t_r1": 0.97,
                "test/i2t_r1.ci_low": 0.945,
                "test/i2t_r1.ci_high": 0.99,
                "test/t2i_r1/left_to_right": 0.9,
            },
        ],
    )
    rows = retrieval_tables.validation_table([run], [500, 750, 1000])
    assert rows[2:] == [
        "| final | 500 | 86.1 | 74.7 | - |",
        "| final | 1000 | 90.0 | 95.0 | 92.5 |",
    ]
    test = retrieval_tables.test_table(run)
    assert "| all | i2t | 97.0 [94.5, 99.0] | - | - |" in test
    assert "| left_to_right | t2i | 90.0 | - | - |" in test
    assert test[0] == "final (step 1000):"
