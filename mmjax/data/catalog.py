"""TFDS catalog datasets and prepared custom datasets, read by directory without TensorFlow.

    source = load_split("coco_captions", "~/tensorflow_datasets", "train")
    record = source[0]  # {"id", "image", "captions": [...]} (see `DATASETS`)

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
import os
from collections.abc import Callable

import numpy as np

from mmjax.config_utils import ConfigError


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


def custom_record(raw: dict, index: int) -> dict:
    """A decoded example of `mmjax.data.prepare` -> {"id", "image", "captions", "questions"}."""
    del index
    record = {"id": int(raw["id"]), "image": raw["image"]}
    record["captions"] = _texts(raw["captions"]["text"])
    qa = raw["question_answer"]
    record["questions"] = {"text": _texts(qa["question"]), "answer": _texts(qa["answer"])}
    return record


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives under `data_dir` and how its records map to the common layout.

    Attributes:
      config: the TFDS config directory ("2014" for coco_captions), or None.
      splits: its split names.
      to_record: (decoded TFDS example, index) -> record in the common layout.
      under_name: whether the dataset is `<data_dir>/<name>/...` (catalog datasets) or
        `data_dir` itself (a prepared custom dataset).
    """

    config: str | None
    splits: tuple[str, ...]
    to_record: Callable[[dict, int], dict]
    under_name: bool = True


DATASETS = {
    # Karpathy & Li splits of COCO 2014: 82,783 / 5,000 / 5,000 (+ 30,504 restval) images.
    "coco_captions": DatasetSpec("2014", ("train", "val", "test", "restval"), coco_captions_record),
    # CLEVR v1.0: the test split's answers are empty; evaluate on "validation".
    "clevr": DatasetSpec(None, ("train", "validation", "test"), clevr_record),
    "custom": DatasetSpec(None, ("train", "validation"), custom_record, under_name=False),
}


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in name.split("."))


def dataset_dir(name: str, data_dir: str) -> str:
    """The directory holding the prepared files of dataset `name` (newest version).

    Raises ConfigError naming the directory it looked in when there is none.
    """
    spec = DATASETS[name]
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

    if name not in DATASETS:
        raise ConfigError(f"data.name={name!r} is not one of {sorted(DATASETS)}")
    if resize not in RESIZE:
        raise ConfigError(f"data.resize={resize!r} is not one of {sorted(RESIZE)}")
    directory = dataset_dir(name, data_dir)
    splits = _data_sources(directory, image_size is not None)
    if split not in splits:
        raise ConfigError(
            f"dataset {name!r} in {directory} has no split {split!r}; it has {sorted(splits)}"
        )
    return RecordSource(splits[split], DATASETS[name].to_record, image_size, resize)


# The split each dataset is evaluated on: coco_captions' Karpathy "val", CLEVR's "validation"
# (its test answers are hidden), a custom dataset's "validation".
EVAL_SPLITS = {
    "sort_of_clevr": "test",
    "coco_captions": "val",
    "clevr": "validation",
    "custom": "validation",
}


def data_config(
    dataset: str, data_dir: str, image_size: int, num_train: int, num_test: int, **keys
) -> dict:
    """The `config.data` entries of `dataset`, for config files with a `dataset=` argument.

    Args:
      dataset: "sort_of_clevr", "coco_captions", "clevr" or "custom".
      data_dir: the TFDS root (a catalog dataset, Sort-of-CLEVR) or the prepared directory
        (custom); "" means ~/tensorflow_datasets, which a custom dataset cannot use.
      image_size: Sort-of-CLEVR's generated image side, or the side every other dataset's
        images are resized to (data.resize: "squash" for clevr, "crop", centre crop, else).
      num_train: Sort-of-CLEVR's training scenes (built on first use, dataset seed 0).
      num_test: Sort-of-CLEVR's test scenes.
      **keys: the task's entries (text lengths, captions or questions per image, ...), and
        any of the pipeline's defaults to override (shuffle_seed=0, num_threads=2, cache_mb).

    Raises ConfigError for an unknown dataset or a custom one without data_dir.
    """
    from mmjax.config_utils import choose, require

    choose("dataset", dataset, EVAL_SPLITS)
    require(
        dataset != "custom" or bool(data_dir),
        "dataset=custom needs data_dir=<the --output of python -m mmjax.data.prepare>",
    )
    data = dict(name=dataset, data_dir=data_dir or "~/tensorflow_datasets", image_size=image_size)
    # The train pipeline's settings (mmjax.data.pipeline.train_dataset).
    data.update(shuffle_seed=0, num_threads=2, cache_mb=0)
    if dataset == "sort_of_clevr":
        data.update(num_train=num_train, num_test=num_test, dataset_seed=0, build_if_missing=True)
        # The preprocessed training split: about 19 kB a scene (190 MB for the default 9,800).
        data["cache_mb"] = 1024
    else:
        # CLEVR's 480x320 scenes are squashed whole: a centre crop would cut off the objects
        # near the sides that questions ask about. Photos keep their aspect ratio.
        data["resize"] = "squash" if dataset == "clevr" else "crop"
    return dict(data, **keys)


def sort_of_clevr_eval(batch_size: int, every: int) -> dict:
    """The test-split classification evaluator of Sort-of-CLEVR's answers, per question type.

    Accuracy overall, for each of `sort_of_clevr.SUBTYPES` and for the non-relational (the
    first three) and relational (the last three) groups, on batches of `batch_size` images,
    every `every` steps.
    """
    from mmjax.projects.sort_of_clevr.scenes import SUBTYPES

    return dict(
        type="classification",
        split="test",
        batch_size=batch_size,
        every=every,
        num_classes=10,
        label_key="answer",
        prediction_key="answer",
        slice_key="subtype",
        slice_names=list(SUBTYPES),
        groups={"non_relational": [0, 1, 2], "relational": [3, 4, 5]},
    )
