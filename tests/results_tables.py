"""The numbers of the results pages' tables, and the run files that must hold them.

A results page is a `README.md` in a results folder: any folder named `results` in the
repository, or one below it (`experiments/results/<topic>/README.md`,
`mmjax/projects/<project>/results/<topic>/README.md`). Every number in the body of one of its
markdown tables must be found in a `.json` or `.jsonl` file under the page's own folder (its
subfolders included): equal after rounding to the decimals shown, or, x100, to a fraction
shown as a percentage (0.9753 backs 97.5 and 97.5%).

What is not read as a measurement, and why:
- the header row and the `| --- |` line (names, not numbers);
- code spans in a cell (`lr=1e-3`: a config value that names the row);
- digits inside a word or name (`BLEU-4`, `R@5`, `resnet50`, `3x3`, `2e-3`), and a
  citation's year (`Santoro et al. 2017`);
- the columns named in a comment on the line right above the table (blank lines between
  allowed): `<!-- results-check: not measured: epochs, train min -->`. This opt-out is for
  columns that are not measurements (a step count chosen by the command, a budget); the test
  lists every use so a reader sees them.

`page_problems(page)` returns one line per number it cannot find; used by
tests/test_results_tables.py.
"""

from __future__ import annotations

import bisect
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SKIP_DIRS = {".git", "runs", "node_modules", "__pycache__", ".ipynb_checkpoints"}
_FENCE = re.compile(r"^```.*?^```[^\n]*$", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`]*`")
_CITATION = re.compile(r"et al\.,? \d{4}")  # "Santoro et al. 2017": a year, not a measurement
_OPT_OUT = re.compile(r"<!--\s*results-check:\s*not measured:\s*(.*?)\s*-->")
# A number that stands alone: not after a letter, digit, '.', '-', '@', '/', '^', '_' or '#',
# and not followed by a letter or digit (a trailing '%' or 'x' is its unit).
_NUMBER = re.compile(
    r"(?:(?<![\w.@#^/])([-+\u2212])|(?<![\w.@#^/\-+\u2212]))"
    r"(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(%|x)?(?![\w.]|\.\d)"
)


def results_pages(root: str = ROOT) -> list[str]:
    """Every README.md in a results folder under `root` (hidden folders and runs/ left out)."""
    pages = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
        parts = os.path.relpath(folder, root).split(os.sep)
        if "results" in parts and "README.md" in files:
            pages.append(os.path.join(folder, "README.md"))
    return pages


def _values(obj, out: list) -> None:
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        out.append(float(obj))
    elif isinstance(obj, dict):
        for value in obj.values():
            _values(value, out)
    elif isinstance(obj, list):
        for value in obj:
            _values(value, out)


def run_file_values(folder: str) -> list[float]:
    """Every number in the .json and .jsonl files under `folder`, sorted."""
    out: list[float] = []
    for sub, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = os.path.join(sub, name)
            if name.endswith(".json"):
                with open(path) as f:
                    _values(json.load(f), out)
            elif name.endswith(".jsonl"):
                with open(path) as f:
                    for line in f:
                        if line.strip():
                            _values(json.loads(line), out)
    return sorted(v for v in out if v == v)  # NaN matches nothing


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def tables(markdown: str) -> list[tuple[list[str], list[list[str]], set[str], int]]:
    """(header, body rows, opted-out column names, line number) of each markdown table."""
    text = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), markdown)
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines) - 1:
        is_rule = re.fullmatch(r"\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*", lines[i + 1])
        if lines[i].lstrip().startswith("|") and is_rule:
            header, start = _cells(lines[i]), i
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            opted = _OPT_OUT.search(lines[j]) if j >= 0 else None
            skip = {c.strip() for c in opted.group(1).split(",")} if opted else set()
            rows, i = [], i + 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            found.append((header, rows, skip, start + 1))
        else:
            i += 1
    return found


def numbers(cell: str) -> list[tuple[float, int, str]]:
    """(value, decimals shown, text) of each number in a table cell."""
    cell = _CODE_SPAN.sub(" ", cell.replace("**", "").replace("\u2009", ""))
    cell = _CITATION.sub(" ", cell)
    out = []
    for m in _NUMBER.finditer(cell):
        sign, whole, frac, _ = m.groups()
        value = float(whole.replace(",", "") + (frac or ""))
        if sign in ("-", "\u2212"):
            value = -value
        out.append((value, len(frac) - 1 if frac else 0, m.group(0)))
    return out


def backed(value: float, decimals: int, values: list[float]) -> bool:
    """Whether a run-file value rounds to `value` at `decimals`, as itself or x100."""
    half = 0.5 * 10.0**-decimals + 1e-9 * max(1.0, abs(value))
    for target in (value, value / 100.0):
        tol = half if target == value else half / 100.0
        k = bisect.bisect_left(values, target - tol)
        if k < len(values) and values[k] <= target + tol:
            return True
    return False


def page_problems(page: str) -> list[str]:
    """One line per table number of `page` that no run file under its folder holds."""
    with open(page) as f:
        markdown = f.read()
    values = run_file_values(os.path.dirname(page))
    rel = os.path.relpath(page, ROOT)
    problems = []
    for header, rows, skip, line in tables(markdown):
        unknown = skip - set(header)
        if unknown:
            problems.append(f"{rel}:{line}: the opt-out names no column {sorted(unknown)}")
        for row in rows:
            for k, cell in enumerate(row):
                if k < len(header) and header[k] in skip:
                    continue
                for value, decimals, text in numbers(cell):
                    if not backed(value, decimals, values):
                        column = header[k] if k < len(header) else f"column {k + 1}"
                        problems.append(
                            f"{rel}:{line}: {text!r} (row {row[0]!r}, column {column!r}) "
                            "is in no .json/.jsonl file under the page's folder"
                        )
    return problems


def opt_outs(page: str) -> list[str]:
    """The columns `page` opts out of the check, as 'page: columns' lines."""
    with open(page) as f:
        markdown = f.read()
    rel = os.path.relpath(page, ROOT)
    return [f"{rel}: {sorted(skip)}" for _, _, skip, _ in tables(markdown) if skip]
