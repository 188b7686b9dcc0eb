"""Random-access data sources by name, from `config.data`.

`sort_of_clevr` is built locally (TFDS builder, ArrayRecord files) into `data_dir` when
missing and `build_if_missing` is set; otherwise a missing dataset is an error naming the
directory.
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


def prepare(data_config) -> None:
    """Builds the dataset of `data_config` if it is missing and building is allowed."""
    if data_config.name != "sort_of_clevr":
        raise ConfigError(f"data.name={data_config.name!r} is not one of ['sort_of_clevr']")
    if data_config.build_if_missing:
        from mmjax.data.sort_of_clevr_tfds import build_sort_of_clevr

        data_dir = os.path.abspath(os.path.expanduser(data_config.data_dir))
        os.makedirs(data_dir, exist_ok=True)
        # Runs started together (a sweep, several users) would otherwise build the same
        # dataset at once, and TFDS's final rename fails for all but one of them.
        with open(os.path.join(data_dir, ".mmjax-build.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            build_sort_of_clevr(data_dir, **_sort_of_clevr_kwargs(data_config))


def get_source(data_config, split: str):
    """The random-access source (len, __getitem__ -> record dict) of `split`."""
    from mmjax.data.sort_of_clevr_tfds import load_sort_of_clevr

    data_dir = os.path.abspath(os.path.expanduser(data_config.data_dir))
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

    def __init__(self, source, name: str, data_dir: str):
        self._source = source
        self.name = name
        self.data_dir = data_dir

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
                f"{self.name} record {index} is corrupt ({type(error).__name__}: {detail}); "
                f"the files under {self.data_dir} are damaged: delete the dataset's directory "
                "there to rebuild it"
            ) from None
