"""The dataset contract: what a task, an evaluator or predict may know of a dataset.

A dataset is a `Dataset` subclass registered by name (`mmjax.registry.DATASETS`), built from
`config.data` (`data.name` picks it). Tasks read records through `source(split)` in the
common layout

  "id": int; "image": uint8 [H, W, 3];
  "captions": list of str (captioning, retrieval and autoencoding datasets);
  "questions": {"text": list of str, "answer": list of str, <field>: list ...} (VQA datasets),

and take from the dataset, never from a module of a particular dataset, its splits, the
tokenizer or answer set it fixes, the extra per-question arrays its evaluators slice by, the
annotations its evaluators score, the grouping attributes of its questions and images (for
disparity), its counterfactual probes, and its baseline. Every hook has a neutral default here, so a
new dataset implements `prepare` and `source` and overrides only what it has.
"""

from __future__ import annotations

import fcntl
import os

import numpy as np

from mmjax.config_utils import ConfigError
from mmjax.data.errors import DataError
from mmjax.registry import DATASETS


class Dataset:
    """Base class of every dataset (see the module docstring).

    Attributes:
      splits: the split names.
      validation_split: the split evaluated during training and used for design choices.
      test_split: the split scored once, at the end of a run.
      question_fields: example key -> (key in the record's "questions", NumPy dtype): extra
        per-question arrays a VQA example carries, e.g. a question type to slice accuracy by
        ({} by default). Padding rows hold -1 (integers) or 0.
    """

    splits: tuple[str, ...] = ("train", "validation", "test")
    validation_split: str = "validation"
    test_split: str = "test"
    question_fields: dict[str, tuple[str, type]] = {}

    def __init__(self, data_config):
        self.config = data_config
        self.name = data_config.name
        self.data_dir = os.path.abspath(os.path.expanduser(data_config.get("data_dir", "")))

    @classmethod
    def eval_splits(cls, name: str) -> tuple[str, str]:
        """(validation split, test split) of the dataset registered as `name`."""
        del name
        return cls.validation_split, cls.test_split

    def prepare(self) -> None:
        """Builds the dataset if it can be built here and is missing, else checks it is there.

        Raises ConfigError saying how to get a dataset that is missing.
        """

    def source(self, split: str, images: bool = True):
        """Random access (len, [i] -> record) to `split`, as a `CheckedSource`.

        images=False may leave the images out, for reading only the text (a vocabulary).
        """
        raise NotImplementedError

    def provided_tokenizer(self, kind: str, field: str):
        """The tokenizer of `kind` the dataset fixes for its `field` texts, or None.

        `field` is "captions" or "questions"; with None a tokenizer is built from the training
        split.
        """
        del kind, field
        return None

    def provided_answers(self) -> list[str] | None:
        """The answer set the dataset fixes, most frequent first (ids in this order), or None."""
        return None

    def annotations(self, record: dict) -> dict[str, np.ndarray]:
        """Per-example arrays the dataset's own evaluators score (e.g. object layouts); {}."""
        del record
        return {}

    def answer_baseline(self, split: str) -> tuple[str, dict[str, float]]:
        """(its name, accuracy per row on `split`) of a model that ignores the image.

        Rows are "overall" and, for datasets that slice by question type, one per slice. The
        default answers every question with the most frequent training answer.
        """
        from mmjax.data.answers import normalize_answer

        def answers(records):
            return [normalize_answer(str(a)) for r in records for a in r["questions"]["answer"]]

        counts: dict[str, int] = {}
        for answer in answers(self.source("train", images=False)):
            counts[answer] = counts.get(answer, 0) + 1
        if not counts:
            raise DataError(f"{self.name} train has no answers")
        best = min(counts, key=lambda a: (-counts[a], a))
        hits = [a == best for a in answers(self.source(split, images=False))]
        return "most frequent answer", {"overall": float(np.mean(hits)) if hits else np.nan}

    def known_questions(self) -> list[str] | None:
        """Every question the dataset can ask, when it has a closed set (templates); else None."""
        return None

    def question_attributes(self, record: dict) -> dict[str, list[str]]:
        """Grouping attribute -> its value for each question of `record` (for disparity).

        E.g. {"color": ["red", "blue", ...]} with one value per question; {} by default.
        """
        del record
        return {}

    def answers_per_question(self) -> int:
        """The most human answers a question has (VQAv2: 10); 1 by default.

        With more than one, VQA runs train on soft targets and normalise answers as the VQA
        evaluation does, unless data.soft_targets / data.answer_normalization say otherwise.
        """
        return 1

    def image_attributes(self, record: dict) -> dict[str, str]:
        """Grouping attribute -> the value of `record`'s image (for disparity); {} by default."""
        del record
        return {}

    def counterfactual(self, record: dict, kind: str) -> dict:
        """`record` with its questions changed by probe `kind` (e.g. "color_swap").

        The changed record keeps the common layout, its answers the right ones for the changed
        questions, and "questions"/"original_answer" the answers before the change. Datasets
        without probes raise ConfigError.
        """
        del record
        raise ConfigError(f"dataset {self.name!r} has no counterfactual probe {kind!r}")

    def eval_source(self, split: str) -> CheckedSource:
        """The records an evaluation of `split` reads.

        `source(split)`, or for "<split>:<probe>" the split's records changed by
        `counterfactual(record, probe)`.
        """
        split, _, probe = split.partition(":")
        source = self.source(split)
        if not probe:
            return source
        self.counterfactual(source[0], probe)  # an unknown probe fails here, before any batch
        return CheckedSource(
            source, source.name, source.hint, lambda r, i: self.counterfactual(r, probe)
        )


def as_text(text) -> str:
    """`text` (str or UTF-8 bytes, as TFDS decodes strings) as str."""
    return text.decode() if isinstance(text, bytes) else str(text)


class LocallyBuiltDataset(Dataset):
    """A dataset that mmjax generates itself and stores under data.data_dir (TFDS files).

    Subclasses build in `prepare` through `build_locked` and read through `stored_source`, so
    every locally built dataset locks, names a missing split and reports damaged files alike.
    """

    title: str = ""  # the dataset's name in messages, e.g. "Sort-of-CLEVR"

    def build_locked(self, build) -> None:
        """Runs `build()`, which writes the dataset under data_dir, holding its build lock.

        Runs started together (a sweep, several users) would otherwise build the same dataset
        at once, and TFDS's final rename fails for all but one of them; the lock is per dataset
        so that building one does not hold up runs of another in the same data_dir.
        """
        os.makedirs(self.data_dir, exist_ok=True)
        with open(os.path.join(self.data_dir, f".mmjax-build-{self.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            build()

    def stored_source(self, split: str, load, transform=None) -> CheckedSource:
        """`load()`'s records of `split` as a CheckedSource; `transform(record, index)` maps each.

        Raises ConfigError for a split the dataset lacks or files missing under data_dir.
        """
        if split not in self.splits:
            raise ConfigError(f"{self.title} has no split {split!r}; it has {list(self.splits)}")
        try:
            records = load()
        except FileNotFoundError as error:
            raise ConfigError(
                f"dataset {self.name!r} not found in data.data_dir={self.data_dir!r} ({error}); "
                "set data.build_if_missing=True to build it"
            ) from None
        return CheckedSource(
            records,
            f"{self.name} {split}",
            f"; the files under {self.data_dir} are damaged: delete the dataset's directory "
            "there to rebuild it",
            transform=transform,
        )


def get_dataset(data_config) -> Dataset:
    """The registered dataset named by `data_config.name`, built from `data_config`."""
    return DATASETS.get(data_config.name)(data_config)


class CheckedSource:
    """Wraps a random-access source so that an unreadable record raises a DataError naming it.

    `len(source)` and `source[i]` as in the wrapped source; `transform(record, index)`, when
    given, maps each raw record to the common layout.
    """

    def __init__(self, source, name: str, hint: str, transform=None):
        self._source = source
        self.name = name
        self.hint = hint
        self._transform = transform

    def __len__(self) -> int:
        return len(self._source)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name} has {len(self)} records, no record {index}")
        try:
            record = self._source[index]
        except Exception as error:  # noqa: BLE001 - whatever the decoder raised, name the record
            detail = str(error).splitlines()[0][:200] if str(error) else ""
            raise DataError(
                f"{self.name} record {index} is corrupt ({type(error).__name__}: {detail})"
                + self.hint
            ) from None
        return record if self._transform is None else self._transform(record, index)
