"""Random-access data sources by name, from `config.data`.

`sort_of_clevr` is built locally (TFDS builder, ArrayRecord files) into `data_dir` when
missing and `build_if_missing` is set; otherwise a missing dataset is an error naming the
directory.

`coco_captions` and `clevr` (TFDS catalog datasets, prepared in ArrayRecord format under
`data_dir`) and `custom` (a dataset written by `python -m mmjax.data.prepare`; `data_dir` is
its directory) are never built here: see `mmjax.data.catalog`. Their records come in the common
layout of `catalog`, images resized to `data.image_size` (`data.resize`: "crop" or "squash").
"""

from __future__ import annotations

import fcntl
import os

from mmjax.config_utils import ConfigError
from mmjax.data.errors import DataError


def _sort_of_clevr_kwargs(data_config) -> dict:
    return dict(
        num_train=data_config.num_train,
        num_test=data_config.num_test,
        image_size=data_config.image_size,
        seed=data_config.dataset_seed,
    )


def known_names() -> list[str]:
    """The values data.name may take."""
    from mmjax.data.catalog import DATASETS

    return sorted(["sort_of_clevr", *DATASETS])


def prepare(data_config) -> None:
    """Builds the dataset of `data_config` if it is missing and building is allowed.

    Datasets that cannot be built here (catalog and custom ones) are only checked: a missing
    one is a ConfigError that says how to get it.
    """
    if data_config.name not in known_names():
        raise ConfigError(f"data.name={data_config.name!r} is not one of {known_names()}")
    if data_config.name != "sort_of_clevr":
        from mmjax.data.catalog import dataset_dir

        dataset_dir(data_config.name, data_config.data_dir)
        return
    if data_config.build_if_missing:
        from mmjax.projects.sort_of_clevr.tfds_builder import build_sort_of_clevr

        data_dir = os.path.abspath(os.path.expanduser(data_config.data_dir))
        os.makedirs(data_dir, exist_ok=True)
        # Runs started together (a sweep, several users) would otherwise build the same
        # dataset at once, and TFDS's final rename fails for all but one of them.
        with open(os.path.join(data_dir, ".mmjax-build.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            build_sort_of_clevr(data_dir, **_sort_of_clevr_kwargs(data_config))


def dataset_file(data_config, filename: str) -> str | None:
    """The path of `filename` saved with the dataset (a custom dataset's tokenizer), or None."""
    if data_config.name != "custom":
        return None
    path = os.path.join(os.path.abspath(os.path.expanduser(data_config.data_dir)), filename)
    return path if os.path.exists(path) else None


def get_source(data_config, split: str, images: bool = True):
    """The random-access source (len, __getitem__ -> record dict) of `split`.

    images=False may leave the images out of the records, for reading only their text (a
    vocabulary, a baseline): catalog and custom datasets then skip decoding them.
    """
    from mmjax.projects.sort_of_clevr.tfds_builder import load_sort_of_clevr

    data_dir = os.path.abspath(os.path.expanduser(data_config.data_dir))
    if data_config.name != "sort_of_clevr":
        from mmjax.data.catalog import dataset_dir, load_split

        if data_config.name not in known_names():
            raise ConfigError(f"data.name={data_config.name!r} is not one of {known_names()}")
        source = load_split(
            data_config.name,
            data_dir,
            split,
            data_config.image_size if images else None,
            data_config.get("resize", "crop"),
        )
        return CheckedSource(
            source,
            f"{data_config.name} {split}",
            dataset_dir(data_config.name, data_dir),
            hint="; the files under {data_dir} may be damaged: prepare the dataset again",
        )
    try:
        source = load_sort_of_clevr(data_dir, split, **_sort_of_clevr_kwargs(data_config))
    except FileNotFoundError as error:
        raise ConfigError(
            f"dataset {data_config.name!r} not found in data.data_dir={data_dir!r} ({error}); "
            "set data.build_if_missing=True to build it"
        ) from None
    return CheckedSource(source, f"{data_config.name} {split}", data_dir)


class CheckedSource:
    """Wraps a random-access source so that an unreadable record raises a DataError naming it.

    `len(source)` and `source[i]` as in the wrapped source.
    """

    def __init__(self, source, name: str, data_dir: str, hint: str | None = None):
        self._source = source
        self.name = name
        self.data_dir = data_dir
        self.hint = (
            "; the files under {data_dir} are damaged: delete the dataset's directory there to "
            "rebuild it"
            if hint is None
            else hint
        )

    def __len__(self) -> int:
        return len(self._source)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name} has {len(self)} records, no record {index}")
        try:
            return self._source[index]
        except Exception as error:  # noqa: BLE001 - whatever the decoder raised, name the record
            detail = str(error).splitlines()[0][:200] if str(error) else ""
            raise DataError(
                f"{self.name} record {index} is corrupt ({type(error).__name__}: {detail})"
                + self.hint.format(data_dir=self.data_dir)
            ) from None
