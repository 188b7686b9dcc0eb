"""Where `config.init_from.path` points: an mmjax workdir, a weights file, a Hugging Face directory.

  a workdir (a directory with checkpoints/)   its newest checkpoint's parameters (or `step`'s)
  a Hugging Face save_pretrained directory    `mmjax.weights.hf` (CLIPModel, ViTModel)
  an .npz file in big_vision's layout         `mmjax.weights.big_vision` (a ViT)
  an .npz file of mmjax parameter paths       as written by `python -m mmjax.weights convert`

Every source is read into {mmjax parameter path: NumPy array}; nothing is downloaded, and
nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from mmjax.weights import big_vision, hf, tree
from mmjax.weights.errors import WeightsError


@dataclasses.dataclass(frozen=True)
class Source:
    """Parameters read from `path`.

    Attributes:
      path: the absolute path read.
      kind: "workdir", "hugging_face", "big_vision" or "mmjax_npz".
      params: {mmjax parameter path: array}.
      unused: the source's arrays that have no mmjax parameter (in its own naming).
      step: the checkpoint step, for a workdir.
      description: what was read, for messages.
    """

    path: str
    kind: str
    params: dict
    unused: tuple = ()
    step: int | None = None
    description: str = ""


def _is_big_vision(names) -> bool:
    return any(
        n.startswith(("Transformer/", "params/Transformer/")) or n == "embedding/kernel"
        for n in names
    )


def _read_workdir(path: str, step: int) -> Source:
    from mmjax.train.checkpoints import CheckpointError, restore_params

    try:
        found, params = restore_params(os.path.join(path, "checkpoints"), step or None)
    except CheckpointError as error:
        raise WeightsError(f"init_from.path: {error}") from None
    flat = tree.as_numpy(tree.flatten(params))
    return Source(path, "workdir", flat, (), found, f"mmjax workdir {path} at step {found}")


def _read_npz(path: str) -> Source:
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
    except (OSError, ValueError) as error:
        raise WeightsError(f"cannot read {path}: {error}") from None
    if _is_big_vision(names):
        imported = big_vision.load(path)
        return Source(
            path, "big_vision", imported.params, tuple(imported.unused), None, imported.source
        )
    with np.load(path, allow_pickle=False) as npz:
        params = {k: np.asarray(npz[k]) for k in npz.files}
    return Source(path, "mmjax_npz", params, (), None, f"mmjax parameters at {path}")


@functools.lru_cache(maxsize=1)
def _read(path: str, step: int, mtime: float) -> Source:
    del mtime  # part of the cache key only: a rewritten file is read again
    if os.path.isdir(path):
        if os.path.isdir(os.path.join(path, "checkpoints")):
            return _read_workdir(path, step)
        if hf.is_hf_directory(path):
            imported = hf.load(path)
            return Source(
                path, "hugging_face", imported.params, tuple(imported.unused), None, imported.source
            )
        raise WeightsError(
            f"init_from.path={path!r} is a directory that is neither an mmjax workdir (no "
            "checkpoints/) nor a Hugging Face save_pretrained directory (no config.json with a "
            "model_type)"
        )
    if path.endswith(".npz"):
        return _read_npz(path)
    raise WeightsError(
        f"init_from.path={path!r}: expected a workdir, a save_pretrained directory or an .npz file"
    )


def read(path: str, step: int = 0) -> Source:
    """The parameters at `path` (see the module docstring); `step` picks a workdir checkpoint.

    Raises WeightsError naming the path when it is missing, unreadable or of no known kind.
    Reads once per (path, step, modification time): a run checks, then loads, the same source.
    """
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(path):
        raise WeightsError(f"init_from.path={path!r} does not exist")
    return _read(path, int(step), os.path.getmtime(path))
