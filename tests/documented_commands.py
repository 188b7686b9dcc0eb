"""The shell commands written in the README and docs/*.md, as a user would copy them.

`documented_commands(program)` finds every `python -m <program> ...` in fenced code blocks and
inline code spans (lines joined at a trailing backslash, an inline span's line breaks read as
spaces), cuts each at `&&`, `;`, `|` or a comment, and returns its arguments after the program
name. Optional arguments written in brackets (`[--smooth=0.6]`) are kept, without the brackets.
Used by tests/test_documented_commands.py.
"""

from __future__ import annotations

import glob
import os
import re
import shlex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"`([^`]+)`")
_SEPARATORS = {"&&", "||", ";", "|"}


def doc_files() -> list[str]:
    """README.md and every docs/*.md page, repository-relative."""
    pages = sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
    return ["README.md"] + [os.path.relpath(p, ROOT) for p in pages]


def _code_texts(markdown: str) -> list[str]:
    """Each fenced block's lines (continuations joined) and each inline span outside them."""
    texts = []
    for block in _FENCE.findall(markdown):
        texts += block.replace("\\\n", " ").splitlines()
    prose = _FENCE.sub("", markdown)
    texts += [" ".join(span.split()) for span in _INLINE.findall(prose)]
    return texts


def _arguments(tail: str) -> list[str] | None:
    """The shell words of `tail` up to a separator; None when it does not parse."""
    for text in (tail, tail.rstrip().rstrip('"')):  # `--command "... python -m x ..."`
        try:
            words = shlex.split(text, comments=True)
            break
        except ValueError:
            continue
    else:
        return None
    out, optional = [], False
    for word in words:
        if word in _SEPARATORS:
            break
        if word.startswith("["):
            word, optional = word[1:], True
        if optional and word.endswith("]"):
            word, optional = word[:-1], False
        if word:
            out.append(word)
    return out


def documented_commands(program: str) -> list[tuple[str, list[str]]]:
    """(page, arguments) of every `python -m <program>` command in the docs, in page order."""
    marker = f"python -m {program}"
    found = []
    for page in doc_files():
        with open(os.path.join(ROOT, page)) as f:
            markdown = f.read()
        for text in _code_texts(markdown):
            start = text.find(marker + " ")
            while start >= 0:
                words = _arguments(text[start + len(marker) :])
                if words:
                    found.append((page, words))
                start = text.find(marker + " ", start + 1)
    return found
