"""Random-access data sources by name, from `config.data`.

`sort_of_clevr` is built locally (TFDS builder, ArrayRecord files) into `data_dir` when
missing and `build_if_missing` is set; otherwise a missing dataset is an error naming the
directory.
"""

from __future__ import annotations

import os

from mmjax.config_utils import ConfigError


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
        build_sort_of_clevr(data_dir, **_sort_of_clevr_kwargs(data_config))


def get_source(data_config, split: str):
    """The random-access source (len, __getitem__ -> record dict) of `split`."""
    from mmjax.data.sort_of_clevr_tfds import load_sort_of_clevr

    data_dir = os.path.abspath(os.path.expanduser(data_config.data_dir))
    try:
        return load_sort_of_clevr(data_dir, split, **_sort_of_clevr_kwargs(data_config))
    except FileNotFoundError as error:
        raise ConfigError(
            f"dataset {data_config.name!r} not found in data.data_dir={data_dir!r} ({error}); "
            "set data.build_if_missing=True to build it"
        ) from None
