"""The docs render: every relative link resolves, every documented module answers --help.

Pages: README.md, docs/**/*.md, every results page (README.md in a results folder), the
projects' NOTES.md and the experiments' and probes' READMEs. Links are markdown links and
images, `[text](target)` and `![alt](target)`, outside code; a link with a scheme (https:,
mailto:) is not followed. A target must be a file or folder of the repository; a `#anchor`
must be a heading of the target page (GitHub's slugs: lower case, punctuation dropped, spaces
to hyphens).

Commands: every `python -m <module>` the pages write is collected; each distinct module runs
`--help` once, in its own process forked from one parent that has imported JAX and mmjax
already (so the about twenty modules take seconds, not a minute). An absl program prints its
help and exits 1 after `--help` (absl's convention), so for those exit status 1 with absl's
last help line counts as success; anything else must exit 0. The whole file takes about
5-15 s on this 2-core machine (measured with `pytest --durations`).
"""

import glob
import json
import os
import re
import subprocess
import sys

import pytest
from results_tables import ROOT, results_pages

_FENCE = re.compile(r"^\s*```.*?^\s*```[^\n]*$", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_MODULE = re.compile(r"python -m ([A-Za-z_][\w.]*)")
_ABSL_HELP_END = "Try --helpfull to get a list of all flags."


def doc_pages() -> list[str]:
    """Every page whose links and commands are checked, absolute paths."""
    pages = [os.path.join(ROOT, "README.md")]
    pages += glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
    pages += results_pages()
    pages += glob.glob(os.path.join(ROOT, "mmjax", "projects", "*", "NOTES.md"))
    pages += glob.glob(os.path.join(ROOT, "experiments", "**", "README.md"), recursive=True)
    pages += glob.glob(os.path.join(ROOT, "mmjax", "projects", "*", "probes", "README.md"))
    return sorted(set(pages))


def _prose(markdown: str) -> str:
    return _CODE_SPAN.sub("", _FENCE.sub("", markdown))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: str) -> set[str]:
    """The anchors of a markdown page's headings (duplicates get -1, -2, ... as on GitHub)."""
    with open(page) as f:
        text = _FENCE.sub("", f.read())
    found, counts = set(), {}
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.M):
        base = slug(heading)
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def link_problems(page: str) -> list[str]:
    """One line per relative link of `page` whose file, folder or anchor does not exist."""
    with open(page) as f:
        markdown = f.read()
    rel = os.path.relpath(page, ROOT)
    problems = []
    for target in _LINK.findall(_prose(markdown)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not resolved.startswith(ROOT) or not os.path.exists(resolved):
            problems.append(f"{rel}: link to {target!r}: no such file or folder")
        elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
            problems.append(f"{rel}: link to {target!r}: no heading with that anchor")
    return problems


def documented_modules() -> list[str]:
    """The distinct modules of every `python -m <module>` in the pages, code included."""
    modules = set()
    for page in doc_pages():
        with open(page) as f:
            modules.update(m.rstrip(".") for m in _MODULE.findall(f.read()))
    return sorted(modules)


# Runs in a fresh interpreter: imports what the modules share, then forks one child per module
# that runs it as __main__ with --help, and prints one JSON line per module.
_HELP_DRIVER = r"""
import contextlib, io, json, os, runpy, sys, tempfile
import jax, flax.linen, numpy, optax  # noqa: F401  shared by the children, imported once
import mmjax.experiment  # noqa: F401
for module in sys.argv[1:]:
    out = tempfile.TemporaryFile(mode="w+")
    pid = os.fork()
    if pid == 0:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        sys.argv = [module, "--help"]
        code = 0
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException as e:
            print(f"{type(e).__name__}: {e}")
            code = 99
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    out.seek(0)
    text = out.read()
    print(json.dumps({"module": module, "rc": os.waitstatus_to_exitcode(status),
                      "tail": text.strip().splitlines()[-3:] if text.strip() else []}))
"""


@pytest.fixture(scope="module")
def help_results():
    modules = documented_modules()
    result = subprocess.run(
        [sys.executable, "-c", _HELP_DRIVER, *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return modules, {row["module"]: row for row in rows}


def test_every_relative_link_resolves():
    pages = doc_pages()
    assert len(pages) >= 15, pages
    problems = [line for page in pages for line in link_problems(page)]
    assert not problems, "\n".join(problems)


def test_every_documented_module_answers_help(help_results):
    modules, rows = help_results
    assert {"mmjax.main", "mmjax.predict", "mmjax.plot", "experiments.sweep"} <= set(modules)
    bad = []
    for module in modules:
        row = rows.get(module)
        absl_help = row and row["rc"] == 1 and row["tail"] and row["tail"][-1] == _ABSL_HELP_END
        if row is None or not (row["rc"] == 0 or absl_help):
            bad.append(f"python -m {module} --help: {row}")
    assert not bad, "\n".join(bad)


def test_the_link_checker_finds_a_broken_link_and_a_missing_anchor(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    (tmp_path / "a.md").write_text("# Title\n\n## A section: the `x` part\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#a-section-the-x-part) [top](#b) ![img](a.md) `[not](checked.md)`\n"
        "[gone](missing.md) [bad anchor](a.md#nope) [web](https://example.com)\n\n# B\n"
    )
    problems = link_problems(str(page))
    assert len(problems) == 2, problems
    assert "missing.md" in problems[0] and "nope" in problems[1]
