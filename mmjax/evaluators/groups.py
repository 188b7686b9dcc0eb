"""Grouping attributes in batches: "group/<attribute>" arrays of fixed-width UTF-8 bytes.

A task puts the value of each grouping attribute the dataset supplies (a question's colour, an
image's field of the JSONL line, ...) into the example as uint8 [..., GROUP_BYTES] (0-padded
text), so that the pipeline batches it like any array and the evaluators decode it back to
strings; no vocabulary of group values is needed, and groups are found at evaluation time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from mmjax.data.errors import DataError

GROUP_PREFIX = "group/"
GROUP_BYTES = 48


def encode_values(values: Sequence[str], rows: int | None = None, where: str = "") -> np.ndarray:
    """uint8 [rows, GROUP_BYTES]: each value's UTF-8 bytes, 0-padded; padding rows all 0.

    Raises DataError naming `where` for a value longer than GROUP_BYTES bytes.
    """
    rows = len(values) if rows is None else rows
    out = np.zeros((rows, GROUP_BYTES), np.uint8)
    for i, value in enumerate(list(values)[:rows]):
        data = str(value).encode()
        if len(data) > GROUP_BYTES:
            raise DataError(
                f"{where}: group value {str(value)[:60]!r} is longer than {GROUP_BYTES} bytes"
            )
        out[i, : len(data)] = np.frombuffer(data, np.uint8)
    return out


def metric_name(value: str) -> str:
    """`value` as a part of a metric's name ("top left" -> "top_left", "yes/no" -> "yes_no").

    Runs of characters other than letters, digits, "_", "." and "-" become "_".
    """
    return re.sub(r"[^\w.-]+", "_", str(value)) or "_"


def decode_values(rows: np.ndarray) -> np.ndarray:
    """The text, str [...], of uint8 [..., GROUP_BYTES] rows (an all-zero row is "")."""
    rows = np.asarray(rows, np.uint8)
    flat = rows.reshape(-1, rows.shape[-1])
    text = [bytes(row).rstrip(b"\0").decode(errors="replace") for row in flat]
    return np.asarray(text, dtype=str).reshape(rows.shape[:-1])


def group_examples(
    attributes: Mapping[str, Sequence[str]], rows: int | None = None, where: str = ""
) -> dict[str, np.ndarray]:
    """The example entries "group/<attr>" of `attributes` (attr -> a value per row)."""
    return {
        GROUP_PREFIX + name: encode_values(values, rows, where)
        for name, values in attributes.items()
    }


def batch_groups(batch: Mapping, keep: np.ndarray) -> dict[str, np.ndarray]:
    """Attribute -> str [n]: the batch's "group/<attr>" values at the True entries of `keep`.

    `keep` has the shape of a group array without its last (byte) axis, e.g. [B, Q].
    """
    out = {}
    for key, value in batch.items():
        if key.startswith(GROUP_PREFIX):
            out[key[len(GROUP_PREFIX) :]] = decode_values(np.asarray(value))[keep]
    return out


def concat_groups(parts: list[dict[str, np.ndarray]], sizes: list[int]) -> dict[str, np.ndarray]:
    """Concatenates per-batch group dicts of `sizes` rows (an attribute a batch lacks: "")."""
    names = sorted({name for part in parts for name in part})
    return {
        name: np.concatenate(
            [part.get(name, np.full(size, "", dtype=str)) for part, size in zip(parts, sizes)]
        ).astype(str)
        for name in names
    }
