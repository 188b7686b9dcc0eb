"""Bring your own data: a JSONL file and a folder of images -> an ArrayRecord dataset.

    summary = convert("data.jsonl", "images/", "datasets/mine")  # once
    # then any task: --config=...:dataset=custom,data_dir=datasets/mine

Each line of the JSONL file is one object, either
    {"image": "cat.jpg", "captions": ["a cat on a mat", "a sleeping cat"]}
or  {"image": "cat.jpg", "question": "what animal is it?", "answer": "cat"}
or  {"image": "cat.jpg", "question": "what animal is it?", "answers": ["cat", "kitten", ...]}
with the image path relative to the images folder (or absolute), and an optional
"split": "train" | "validation"; other string, number or boolean fields are grouping
attributes of the question or the image (see `mmjax.data.custom_lines`). Lines about the same
image are merged into one record, so an image may have captions and questions. Images without
a split are divided at random (seeded) into train and validation.

A bad line (not JSON, a missing or mistyped field, empty text, an image that cannot be read,
a split that contradicts an earlier line) is reported with its line number and skipped; the
summary counts them. The dataset is written as a TFDS dataset (ArrayRecord files,
`dataset_info.json`, `features.json`) read back by `mmjax.data.catalog`, with:
  tokenizer.json or tokenizer.model  built from the training split's captions and questions;
  answers.json                       the training answers (every human's), most frequent first;
  prepare_summary.json               the counts and the bad lines.
Everything is written into a temporary directory next to the output and renamed into place at
the end, so a failed or interrupted conversion never leaves a half-written dataset: the output
either does not exist or is complete.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from mmjax.data.answers import AnswerVocabulary
from mmjax.data.custom_lines import SPLITS, BadLine, Entry, parse_line
from mmjax.data.tokenizer import build_tokenizer
from mmjax.workdir import ANSWERS_FILE, TOKENIZER_FILES

_STORED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG"}  # kept as they are; others become PNG


def encoded_image(path: str, max_side: int = 0) -> bytes:
    """The bytes to store for the image file at `path`.

    The file itself when it is an RGB JPEG or PNG no larger than `max_side` (0: any size), else
    the image re-encoded as RGB (shrunk to max_side), in its format if JPEG or PNG, else PNG.

    Raises ValueError (naming the reason) when the file is missing or not a readable image.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
        with PIL.Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes every pixel: a truncated file fails here, not in training
            kind = image.format
            if (
                kind in _STORED_FORMATS
                and image.mode == "RGB"
                and (not max_side or max(image.size) <= max_side)
            ):
                return data
            image = image.convert("RGB")
            if max_side and max(image.size) > max_side:
                image.thumbnail((max_side, max_side), PIL.Image.Resampling.BICUBIC)
            out = io.BytesIO()
            image.save(out, format=_STORED_FORMATS.get(kind, "PNG"))
            return out.getvalue()
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as error:
        raise ValueError(f"not a readable image: {error}") from None


def read_jsonl(input_path: str, images_dir: str, max_side: int = 0, report=print):
    """Reads and checks every line of `input_path`.

    Returns (entries: image path -> Entry in order of first appearance, image bytes: image path
    -> bytes, bad: list of (line number, reason)). Every bad line is passed to `report` as
    "line N: reason" when it is found.
    """
    entries: dict[str, Entry] = {}
    images: dict[str, bytes] = {}
    unreadable: dict[str, str] = {}
    bad = []
    with open(input_path, encoding="utf-8", errors="replace") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue  # blank lines (a trailing newline) are not records
            try:
                parsed = parse_line(text)
                image, split = parsed.image, parsed.split
                path = image if os.path.isabs(image) else os.path.join(images_dir, image)
                if path not in images and path not in unreadable:
                    try:
                        images[path] = encoded_image(path, max_side)
                    except ValueError as error:
                        unreadable[path] = str(error)
                if path in unreadable:
                    raise BadLine(f"image {image!r} cannot be read ({unreadable[path]})")
                entry = entries.get(path)
                if entry is not None and split and entry.split and split != entry.split:
                    raise BadLine(
                        f"split {split!r} contradicts split {entry.split!r} of line {entry.line} "
                        "for the same image"
                    )
            except BadLine as error:
                bad.append((number, str(error)))
                report(f"line {number}: {error}")
                continue
            if entry is None:
                entry = entries[path] = Entry(path=path, line=number)
            entry.split = entry.split or split
            entry.captions.extend(parsed.captions)
            entry.questions.extend(parsed.questions)
            entry.attributes.update(parsed.attributes)
    return entries, images, bad


def assign_splits(entries: list[Entry], validation_fraction: float, seed: int) -> dict:
    """Split name -> its entries, by each entry's own split or at random.

    Entries without a split are shuffled with `seed`, and round(validation_fraction * n) of
    them (at least 1 when there is no other validation entry and n >= 2) go to validation.
    Raises ValueError when a split would be empty.
    """
    fixed = {name: [e for e in entries if e.split == name] for name in SPLITS}
    free = [e for e in entries if e.split is None]
    order = np.random.default_rng(seed).permutation(len(free))
    count = round(validation_fraction * len(free))
    if not fixed["validation"] and validation_fraction > 0 and len(free) >= 2:
        count = max(count, 1)
    count = min(count, len(free) - (0 if fixed["train"] else 1)) if free else 0
    chosen = set(order[:count].tolist())
    splits = {
        "train": fixed["train"] + [e for i, e in enumerate(free) if i not in chosen],
        "validation": fixed["validation"] + [e for i, e in enumerate(free) if i in chosen],
    }
    for name, members in splits.items():
        if not members:
            raise ValueError(f"the {name} split has no images; add more lines or set 'split'")
    return splits


class _CustomDataset(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Writes the records of `convert`; read back with tfds.builder_from_directory."""

    name = "mmjax_custom"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Written by mmjax.data.prepare."}

    def __init__(self, splits: dict, images: dict, **kwargs):
        self._splits = splits
        self._images = images
        super().__init__(**kwargs)

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> None:
        """None: no checksums file (TFDS's lookup needs importlib_resources, see sort_of_clevr)."""
        return None

    @classmethod
    def get_metadata(cls):
        """Empty metadata: there are no metadata files next to this builder."""
        from tensorflow_datasets.core import dataset_metadata

        return dataset_metadata.DatasetMetadata(description="", citation="", tags=[])

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="A custom image-text dataset written by mmjax.data.prepare.",
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Scalar(dtype=np.int64),
                    # The file's own JPEG or PNG bytes: decoded by PIL when read.
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "image/filename": tfds.features.Text(),
                    "captions": tfds.features.Sequence({"text": tfds.features.Text()}),
                    # The grouping attributes of the image, as a JSON object.
                    "attributes": tfds.features.Text(),
                    "question_answer": tfds.features.Sequence(
                        {
                            "question": tfds.features.Text(),
                            "answer": tfds.features.Text(),
                            # The humans' answers (a JSON list; [] when the line gave one
                            # answer) and the question's attributes (a JSON object).
                            "answers": tfds.features.Text(),
                            "attributes": tfds.features.Text(),
                        }
                    ),
                }
            ),
            # Record i of a split is its i-th image, in the order of the JSONL file.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {name: self._generate_examples(entries) for name, entries in self._splits.items()}

    def _generate_examples(self, entries):
        for index, entry in enumerate(entries):
            yield (
                index,
                {
                    "id": index,
                    "image": self._images[entry.path],
                    "image/filename": entry.path,
                    "captions": [{"text": t} for t in entry.captions],
                    "attributes": json.dumps(entry.attributes),
                    "question_answer": [
                        {
                            "question": q.text,
                            "answer": q.answer,
                            "answers": json.dumps(q.answers),
                            "attributes": json.dumps(q.attributes),
                        }
                        for q in entry.questions
                    ],
                },
            )


def _longest(tokenizer, texts: list[str]) -> int:
    return max((len(tokenizer.tokens_to_ids(t)) + 2 for t in texts), default=0)


def convert(
    input_path: str,
    images_dir: str,
    output: str,
    validation_fraction: float = 0.1,
    seed: int = 0,
    tokenizer: str = "word",
    tokenizer_options: dict | None = None,
    max_image_side: int = 0,
    overwrite: bool = False,
    report=print,
) -> dict:
    """Converts `input_path` (JSONL) and the images it names into a dataset at `output`.

    Args:
      input_path: the JSONL file (see the module docstring).
      images_dir: the folder image paths are relative to.
      output: the dataset directory to create (use it as data.data_dir with name "custom").
      validation_fraction: share of the images without a "split" that go to validation.
      seed: the seed of that division.
      tokenizer: "word" or "sentencepiece", built from the training split's texts.
      tokenizer_options: keyword arguments of the tokenizer's build (e.g. vocab_size).
      max_image_side: images larger than this (on their longer side) are shrunk; 0 keeps all.
      overwrite: replace an existing `output` (only once the new one is complete).
      report: called with each line of the report (bad lines, then the summary).

    Returns the summary (also written to prepare_summary.json). Raises ValueError when the
    output exists (without overwrite) or no usable image is left, and FileNotFoundError when
    the input or the images folder is missing; nothing is written then.
    """
    output = os.path.abspath(os.path.expanduser(output))
    _check_arguments(input_path, images_dir, output, tokenizer, overwrite)
    entries, images, bad = read_jsonl(input_path, images_dir, max_image_side, report)
    if not entries:
        raise ValueError(f"{input_path} has no usable line ({len(bad)} bad lines)")
    splits = assign_splits(list(entries.values()), validation_fraction, seed)

    parent = os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    # Next to the output, so the final rename stays on one file system.
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.tmp-", dir=parent)
    try:
        staged = _write_records(splits, images, work)
        text_tokenizer, vocabulary = _write_vocabularies(
            staged, splits["train"], tokenizer, tokenizer_options
        )
        summary = _summary(splits, bad, text_tokenizer, len(vocabulary or ()), tokenizer)
        with open(os.path.join(staged, "prepare_summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        if os.path.exists(output):
            os.rename(output, os.path.join(work, "old"))  # removed with `work` below
        os.rename(staged, output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(summary_line(output, summary))
    return summary


def _check_arguments(input_path, images_dir, output, tokenizer, overwrite) -> None:
    """Raises, before anything is read or written, what `convert` would fail on at once."""
    if os.path.exists(output) and not overwrite:
        raise ValueError(f"{output} exists; pass overwrite=True (--overwrite) to replace it")
    for what, path in (("input file", input_path), ("images folder", images_dir)):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{what} {path} does not exist")
    if tokenizer not in TOKENIZER_FILES:
        raise ValueError(f"tokenizer {tokenizer!r} is not one of {sorted(TOKENIZER_FILES)}")


def _write_records(splits: dict, images: dict, work: str) -> str:
    """Writes the TFDS dataset of `splits` under `work`; returns its folder, work/dataset."""
    builder = _CustomDataset(
        splits, images, data_dir=os.path.join(work, "tfds"), file_format="array_record"
    )
    # TFDS prints "Downloading and preparing dataset" and progress bars: nothing is
    # downloaded, and the report is ours to print.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        builder.download_and_prepare()
    staged = os.path.join(work, "dataset")
    shutil.move(builder.data_dir, staged)
    return staged


def _write_vocabularies(
    staged: str, train: list[Entry], tokenizer: str, tokenizer_options: dict | None
) -> tuple:
    """Saves into `staged` and returns (tokenizer, AnswerVocabulary or None) of `train`."""
    captions = [c for e in train for c in e.captions]
    questions = [q.text for e in train for q in e.questions]
    text_tokenizer = build_tokenizer(tokenizer, captions + questions, **(tokenizer_options or {}))
    text_tokenizer.save(os.path.join(staged, TOKENIZER_FILES[tokenizer]))
    # Every human's answer where a question has several, as the VQA task counts them.
    answers = [a for e in train for q in e.questions for a in (q.answers or [q.answer])]
    vocabulary = AnswerVocabulary.build(answers) if answers else None
    if vocabulary:
        vocabulary.save(os.path.join(staged, ANSWERS_FILE))
    return text_tokenizer, vocabulary


def _summary(splits, bad, text_tokenizer, num_answers, tokenizer_kind) -> dict:
    every = [e for members in splits.values() for e in members]
    return {
        "images": {name: len(members) for name, members in splits.items()},
        "captions": {name: sum(len(e.captions) for e in m) for name, m in splits.items()},
        "questions": {name: sum(len(e.questions) for e in m) for name, m in splits.items()},
        "bad_lines": [{"line": line, "reason": reason} for line, reason in bad],
        "tokenizer": {"kind": tokenizer_kind, "vocab_size": text_tokenizer.vocab_size},
        "answers": num_answers,
        # What data.max_caption_len / max_question_len must hold (bos and eos included).
        "longest_caption_tokens": _longest(text_tokenizer, [c for e in every for c in e.captions]),
        "longest_question_tokens": _longest(
            text_tokenizer, [q.text for e in every for q in e.questions]
        ),
        "most_questions_per_image": max(len(e.questions) for e in every),
        # The grouping attributes' names, so that every example carries the same ones.
        "attributes": {
            "question": sorted({k for e in every for q in e.questions for k in q.attributes}),
            "image": sorted({k for e in every for k in e.attributes}),
        },
        "most_answers_per_question": max(
            (max(len(q.answers), 1) for e in every for q in e.questions), default=0
        ),
    }


def summary_line(output: str, summary: dict) -> str:
    """One line for the end of the report: what was written and how many lines were skipped."""
    images, bad = summary["images"], summary["bad_lines"]
    skipped = ", ".join(str(b["line"]) for b in bad[:20]) + (", ..." if len(bad) > 20 else "")
    return (
        f"wrote {output}: {images['train']} train and {images['validation']} validation images, "
        f"{sum(summary['captions'].values())} captions, "
        f"{sum(summary['questions'].values())} questions; "
        f"skipped {len(bad)} bad line{'s' * (len(bad) != 1)}" + (f" ({skipped})" if bad else "")
    )
