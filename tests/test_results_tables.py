"""Every number in a results page's tables is in a committed run file beside it.

The rule (tests/results_tables.py): a results page is a README.md in a results folder; every
number in the body of one of its tables must be found in a .json or .jsonl file under the
page's own folder, equal after rounding to the decimals shown, or x100 of a fraction shown as a
percentage. So a table cannot drift from the runs it reports. Runs in about a second.
"""

import os
import textwrap

from results_tables import ROOT, numbers, opt_outs, page_problems, results_pages


def test_every_results_table_number_is_in_a_run_file_of_its_folder():
    pages = results_pages()
    assert len(pages) >= 5, pages  # the checker finds the pages it is meant to check
    problems = [line for page in pages for line in page_problems(page)]
    assert not problems, "\n".join(problems)


def test_the_opt_outs_are_few_and_listed():
    # Columns that are not measurements may be opted out by name; each use is listed here so
    # that a reader of the test output sees them, and there are few.
    used = [line for page in results_pages() for line in opt_outs(page)]
    print("\n".join(used))
    assert len(used) <= 5, used


def _page(folder, table: str, runs: dict) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in runs.items():
        (folder / name).write_text(text)
    page = folder / "README.md"
    page.write_text(textwrap.dedent(table))
    return str(page)


def test_a_planted_wrong_number_fails_and_the_right_ones_pass(tmp_path):
    folder = tmp_path / "results" / "toy"
    metrics = '{"step": 2000, "test/accuracy": 0.9753, "test/cider_d": 2.2898}\n'
    good = """\
        # Toy

        | step | accuracy | CIDEr-D | BLEU-4 at `lr=1e-3` |
        | --- | --- | --- | --- |
        | 2,000 | 97.5% | **2.290** | 2.29 |
        """
    assert page_problems(_page(folder, good, {"metrics.jsonl": metrics})) == []
    wrong = good.replace("97.5%", "97.7%")
    problems = page_problems(_page(folder, wrong, {"metrics.jsonl": metrics}))
    assert len(problems) == 1 and "'97.7%'" in problems[0], problems
    # Shown with more decimals than the file backs: 2.2900 is not 2.2898.
    more = good.replace("2.290", "2.2900")
    assert len(page_problems(_page(folder, more, {"metrics.jsonl": metrics}))) == 1


def test_a_number_in_another_folder_does_not_back_a_page(tmp_path):
    (tmp_path / "results" / "other").mkdir(parents=True)
    (tmp_path / "results" / "other" / "results.json").write_text('{"x": 0.413}')
    page = _page(tmp_path / "results" / "toy", "| a | b |\n| --- | --- |\n| x | 41.3 |\n", {})
    assert len(page_problems(page)) == 1


def test_an_opted_out_column_is_skipped_and_a_misnamed_one_is_an_error(tmp_path):
    folder = tmp_path / "results" / "toy"
    runs = {"config.json": '{"accuracy": 0.5}'}
    table = """\
        <!-- results-check: not measured: budget -->

        | run | budget | accuracy |
        | --- | --- | --- |
        | a | 17 | 50.0% |
        """
    assert page_problems(_page(folder, table, runs)) == []
    misnamed = table.replace("not measured: budget", "not measured: budgett")
    problems = page_problems(_page(folder, misnamed, runs))
    assert any("names no column" in p for p in problems)
    assert any("'17'" in p for p in problems)


def test_what_counts_as_a_number_in_a_cell():
    found = [text for _, _, text in numbers("BLEU-4 R@5 resnet50 3x3 2e-3 Santoro et al. 2017")]
    assert found == []
    cell = "-0.3% [+0.82, 1,234] 4.4x (17.5 dB) `steps=9`"
    assert [(v, d) for v, d, _ in numbers(cell)] == [
        (-0.3, 1),
        (0.82, 2),
        (1234.0, 0),
        (4.4, 1),
        (17.5, 1),
    ]


def test_pages_live_in_results_folders_only():
    for page in results_pages():
        assert "results" in os.path.relpath(page, ROOT).split(os.sep)
