"""TFDS catalog datasets and prepared custom datasets, read by directory without TensorFlow.

    source = load_split("coco_captions", "~/tensorflow_datasets", "train")
    record = source[0]  # {"id", "image", "captions": [...]} (see `SPECS`)

The catalog builders of coco_captions and clevr cannot be instantiated without TensorFlow, so
nothing here imports them: `tfds.builder_from_directory` reads a prepared dataset from its
`dataset_info.json` and `features.json`, and `as_data_source` decodes records with NumPy and PIL.
The machines that train need only the prepared files, in ArrayRecord format:

    tfds build coco_captions --data_dir=~/tensorflow_datasets --file_format=array_record
    tfds build clevr --data_dir=~/tensorflow_datasets --file_format=array_record

(run once where TensorFlow is installed and the downloads are reachable). A dataset already
built as TFRecord is converted with `tfds convert_format --dataset_version_dir=DIR
--out_file_format=array_record`.

Every dataset maps its TFDS features to one record layout that the tasks read:
  "id": int; "image": uint8 [H, W, 3] as decoded (sizes vary);
  "captions": list of str (captioning and retrieval datasets);
  "questions": {"text": list of str, "answer": list of str} (question-answering datasets).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable

import numpy as np

from mmjax.config_utils import ConfigError
from mmjax.data.datasets import CheckedSource, Dataset, as_text
from mmjax.registry import DATASETS


def _texts(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def coco_captions_record(raw: dict, index: int) -> dict:
    """A decoded coco_captions example -> {"id" (COCO image id), "image", "captions"}."""
    del index
    return {
        "id": int(raw["image/id"]),
        "image": raw["image"],
        "captions": _texts(raw["captions"]["text"]),
    }


def clevr_record(raw: dict, index: int) -> dict:
    """A decoded clevr example -> {"id" (index in the split), "image", "questions"}."""
    qa = raw["question_answer"]
    return {
        "id": index,
        "image": raw["image"],
        "questions": {"text": _texts(qa["question"]), "answer": _texts(qa["answer"])},
    }


def _json_texts(values, count: int, empty: str) -> list:
    # Datasets prepared before these features existed have none: every value is `empty`.
    return (
        [json.loads(v) for v in _texts(values)]
        if values is not None
        else [json.loads(empty)] * count
    )


def custom_record(raw: dict, index: int) -> dict:
    """A decoded example of `mmjax.data.prepare` -> {"id", "image", "captions", "questions"}.

    Also "attributes" (the image's grouping attributes, a dict), and in "questions", "answers"
    (each question's human answers; [answer] where the line gave one) and "attributes" (a dict
    per question).
    """
    del index
    record = {"id": int(raw["id"]), "image": raw["image"]}
    record["captions"] = _texts(raw["captions"]["text"])
    qa = raw["question_answer"]
    answer = _texts(qa["answer"])
    several = _json_texts(qa.get("answers"), len(answer), "[]")
    record["questions"] = {
        "text": _texts(qa["question"]),
        "answer": answer,
        "answers": [humans or [one] for humans, one in zip(several, answer)],
        "attributes": _json_texts(qa.get("attributes"), len(answer), "{}"),
    }
    attributes = raw.get("attributes")
    record["attributes"] = json.loads(as_text(attributes)) if attributes is not None else {}
    return record


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives under `data_dir` and how its records map to the common layout.

    Attributes:
      config: the TFDS config directory ("2014" for coco_captions), or None.
      splits: its split names.
      to_record: (decoded TFDS example, index) -> record in the common layout.
      validation_split: the split evaluated during training.
      test_split: the split scored at the end (the validation split where test answers are
        hidden).
      under_name: whether the dataset is `<data_dir>/<name>/...` (catalog datasets) or
        `data_dir` itself (a prepared custom dataset).
      resize: how images are fitted to data.image_size by default ("crop" or "squash").
    """

    config: str | None
    splits: tuple[str, ...]
    to_record: Callable[[dict, int], dict]
    validation_split: str
    test_split: str
    under_name: bool = True
    resize: str = "crop"


SPECS = {
    # Karpathy & Li splits of COCO 2014: 82,783 / 5,000 / 5,000 (+ 30,504 restval) images.
    "coco_captions": DatasetSpec(
        "2014", ("train", "val", "test", "restval"), coco_captions_record, "val", "test"
    ),
    # CLEVR v1.0: the test split's answers are empty, so "validation" is also the final split.
    # Its 480x320 scenes are squashed whole: a centre crop would cut off the objects near the
    # sides that questions ask about.
    "clevr": DatasetSpec(
        None,
        ("train", "validation", "test"),
        clevr_record,
        "validation",
        "validation",
        resize="squash",
    ),
    "custom": DatasetSpec(
        None, ("train", "validation"), custom_record, "validation", "validation", under_name=False
    ),
}


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in name.split("."))


def dataset_dir(name: str, data_dir: str) -> str:
    """The directory holding the prepared files of dataset `name` (newest version).

    Raises ConfigError naming the directory it looked in when there is none.
    """
    spec = SPECS[name]
    data_dir = os.path.abspath(os.path.expanduser(data_dir))
    if not spec.under_name:
        if os.path.exists(os.path.join(data_dir, "dataset_info.json")):
            return data_dir
        raise ConfigError(
            f"no prepared dataset in data.data_dir={data_dir!r} (no dataset_info.json); "
            "convert your data with `python -m mmjax.data.prepare --output=DIR` first"
        )
    root = os.path.join(data_dir, name, *([spec.config] if spec.config else []))
    versions = []
    if os.path.isdir(root):
        versions = [
            v
            for v in os.listdir(root)
            if os.path.exists(os.path.join(root, v, "dataset_info.json"))
        ]
    if not versions:
        raise ConfigError(
            f"dataset {name!r} is not in data.data_dir={data_dir!r} (nothing prepared under "
            f"{root}); it cannot be downloaded here: build it once where TensorFlow and the "
            f"internet are available with `tfds build {name} --data_dir={data_dir} "
            "--file_format=array_record` and copy the directory"
        )
    return os.path.join(root, max(versions, key=_version_key))


@functools.lru_cache(maxsize=16)
def _data_sources(directory: str, decode_images: bool = True) -> dict:
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(directory)
    # Reading only the text (a tokenizer or answer vocabulary built from the training split)
    # leaves the encoded image bytes undecoded: COCO's 83k JPEGs would take minutes.
    decoders = None if decode_images else {"image": tfds.decode.SkipDecoding()}
    try:
        return dict(builder.as_data_source(decoders=decoders))
    except NotImplementedError:
        raise ConfigError(
            f"the dataset in {directory} is stored as {builder.info.file_format.value}, and mmjax "
            "reads ArrayRecord; convert it once with `tfds convert_format "
            f"--dataset_version_dir={directory} --out_file_format=array_record`"
        ) from None


class RecordSource:
    """Random access to a split in the common record layout, images resized and cropped.

    `len(source)` and `source[i]` -> record (see the module docstring), its image uint8
    [image_size, image_size, 3] (`images.fit_image` with mode `resize`: "crop" or "squash");
    with image_size None the record has no "image" (text only).
    """

    def __init__(
        self,
        source,
        to_record: Callable[[dict, int], dict],
        image_size: int | None,
        resize: str = "crop",
    ):
        self._source = source
        self._to_record = to_record
        self.image_size = image_size
        self.resize = resize

    def __len__(self) -> int:
        return len(self._source)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int) -> dict:
        from mmjax.data.images import fit_image

        record = self._to_record(self._source[index], index)
        if self.image_size is None:
            del record["image"]
        else:
            image = np.asarray(record["image"])
            record["image"] = fit_image(image, self.image_size, self.resize)
        return record


def load_split(
    name: str, data_dir: str, split: str, image_size: int | None, resize: str = "crop"
) -> RecordSource:
    """The split `split` of dataset `name` under `data_dir`, as a RecordSource.

    With image_size None, images are not decoded and records carry only their text; `resize`
    is "crop" (shorter side to image_size, centre crop) or "squash" (the whole image).

    Raises ConfigError naming what is missing: the dataset, the split (listing those there)
    or the ArrayRecord files.
    """
    from mmjax.data.images import RESIZE

    if name not in SPECS:
        raise ConfigError(f"data.name={name!r} is not one of {sorted(SPECS)}")
    if resize not in RESIZE:
        raise ConfigError(f"data.resize={resize!r} is not one of {sorted(RESIZE)}")
    directory = dataset_dir(name, data_dir)
    splits = _data_sources(directory, image_size is not None)
    if split not in splits:
        raise ConfigError(
            f"dataset {name!r} in {directory} has no split {split!r}; it has {sorted(splits)}"
        )
    return RecordSource(splits[split], SPECS[name].to_record, image_size, resize)


class CatalogDataset(Dataset):
    """A TFDS catalog dataset (coco_captions, clevr) or a prepared custom one, per `SPECS`.

    Nothing is built here: a missing dataset is a ConfigError saying how to prepare it. Images
    are fitted to data.image_size (data.resize: "crop" or "squash").
    """

    def __init__(self, data_config):
        super().__init__(data_config)
        self.spec = SPECS[self.name]
        self.splits = self.spec.splits
        self.validation_split, self.test_split = self.eval_splits(self.name)

    @classmethod
    def eval_splits(cls, name: str) -> tuple[str, str]:
        """(validation split, test split) of dataset `name`."""
        return SPECS[name].validation_split, SPECS[name].test_split

    def prepare(self) -> None:
        """Checks that the prepared files are there (`dataset_dir`)."""
        dataset_dir(self.name, self.data_dir)

    def source(self, split: str, images: bool = True) -> CheckedSource:
        """The records of `split` (`load_split`), a corrupt one named in a DataError."""
        image_size = self.config.image_size if images else None
        resize = self.config.get("resize", self.spec.resize)
        records = load_split(self.name, self.data_dir, split, image_size, resize)
        return CheckedSource(
            records,
            f"{self.name} {split}",
            f"; the files under {dataset_dir(self.name, self.data_dir)} may be damaged: "
            "prepare the dataset again",
        )

    def _own_file(self, filename: str) -> str | None:
        # Only a custom dataset is prepared with its tokenizer and answers (mmjax.data.prepare).
        path = os.path.join(self.data_dir, filename)
        return path if not self.spec.under_name and os.path.exists(path) else None

    def provided_tokenizer(self, kind: str, field: str):
        """A custom dataset's tokenizer of `kind` (built from its captions and questions)."""
        from mmjax.data.tokenizer import load_tokenizer
        from mmjax.workdir import TOKENIZER_FILES

        del field
        path = self._own_file(TOKENIZER_FILES[kind])
        return load_tokenizer(path) if path else None

    @functools.cached_property
    def _summary(self) -> dict:
        # A custom dataset's prepare_summary.json ({} for the others, or when it lacks one).
        path = self._own_file("prepare_summary.json")
        if not path:
            return {}
        with open(path) as f:
            return json.load(f)

    def question_attributes(self, record: dict) -> dict[str, list[str]]:
        """A custom dataset's question fields of the JSONL lines (one value per question).

        Every attribute any question of the dataset has, "" where a question lacks it, so that
        all examples carry the same arrays.
        """
        per_question = record["questions"].get("attributes") or []
        names = self._summary.get("attributes", {}).get("question", [])
        return {name: [a.get(name, "") for a in per_question] for name in names}

    def image_attributes(self, record: dict) -> dict[str, str]:
        """A custom dataset's image fields of the JSONL lines ("" where the image lacks one)."""
        attributes = record.get("attributes") or {}
        names = self._summary.get("attributes", {}).get("image", [])
        return {name: attributes.get(name, "") for name in names}

    def answers_per_question(self) -> int:
        """The most human answers a question of a custom dataset has (1 for the others)."""
        return int(self._summary.get("most_answers_per_question", 1))

    def provided_answers(self) -> list[str] | None:
        """A custom dataset's training answers, most frequent first."""
        from mmjax.data.answers import AnswerVocabulary
        from mmjax.workdir import ANSWERS_FILE

        path = self._own_file(ANSWERS_FILE)
        return AnswerVocabulary.load(path).answers if path else None


def data_config(dataset: str, data_dir: str, image_size: int, **keys) -> dict:
    """The `config.data` entries of `dataset`, for config files with a `dataset=` argument.

    Args:
      dataset: a registered dataset name (data.name).
      data_dir: the TFDS root (a catalog or built-in dataset) or the prepared directory
        (custom); "" means ~/tensorflow_datasets, which a custom dataset cannot use.
      image_size: the side images are generated at or resized to.
      **keys: the dataset's own entries (e.g. a generated dataset's sizes), the task's entries
        (text lengths, captions or questions per image, ...), and any of the pipeline's
        defaults to override (shuffle_seed=0, num_threads=2, cache_mb=0).

    Raises ConfigError for an unknown dataset or a custom one without data_dir.
    """
    from mmjax.config_utils import require

    DATASETS.get(dataset)  # an unknown name is an error that lists the known ones
    require(
        dataset != "custom" or bool(data_dir),
        "dataset=custom needs data_dir=<the --output of python -m mmjax.data.prepare>",
    )
    data = dict(name=dataset, data_dir=data_dir or "~/tensorflow_datasets", image_size=image_size)
    # The train pipeline's settings (mmjax.data.pipeline.train_dataset).
    data.update(shuffle_seed=0, num_threads=2, cache_mb=0)
    if dataset in SPECS:
        data["resize"] = SPECS[dataset].resize
    return dict(data, **keys)


def evals_config(dataset: str, evaluator: dict, every: int) -> dict:
    """`config.evals` of one evaluator on `dataset`'s validation and test splits.

    "validation" runs every `every` steps and at the end; "test" (`every=0`) only at the end,
    so the test split is scored once. `evaluator` holds the evaluator's keys (type,
    batch_size, ...).
    """
    validation, test = DATASETS.get(dataset).eval_splits(dataset)
    return {
        "validation": dict(evaluator, split=validation, every=every),
        "test": dict(evaluator, split=test, every=0),
    }
