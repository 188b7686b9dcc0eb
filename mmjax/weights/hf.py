"""A Hugging Face `save_pretrained` directory -> `Imported` (local files only, never a download).

The directory holds config.json and the weights as safetensors: model.safetensors, or shards
listed by model.safetensors.index.json. PyTorch pickles (pytorch_model.bin) are refused:
mmjax never unpickles. config.json's model_type picks the importer ("clip": `hf_clip`,
"vit": `hf_vit`); preprocessor_config.json, when present, gives the pixel mean and std.
Reading needs the `safetensors` package (`pip install -e ".[convert]"`), not PyTorch.
"""

from __future__ import annotations

import json
import os

import numpy as np

from mmjax.weights import hf_clip, hf_vit
from mmjax.weights.errors import WeightsError
from mmjax.weights.imported import Imported

IMPORTERS = {"clip": hf_clip.convert, "vit": hf_vit.convert}
ARCHITECTURES = {"clip": hf_clip.architecture, "vit": hf_vit.architecture}


def is_hf_directory(path: str) -> bool:
    """Whether `path` is a directory with a Hugging Face config.json (one with a model_type)."""
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        return False
    try:
        with open(config) as f:
            return "model_type" in json.load(f)
    except (OSError, ValueError):
        return False


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise WeightsError(f"cannot read {path}: {error}") from None


def _safetensors_files(directory: str) -> list[str]:
    """The weight files of a save_pretrained directory; WeightsError when there are none."""
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.isfile(index):
        shards = sorted(set(_read_json(index)["weight_map"].values()))
        return [os.path.join(directory, shard) for shard in shards]
    single = os.path.join(directory, "model.safetensors")
    if os.path.isfile(single):
        return [single]
    if os.path.isfile(os.path.join(directory, "pytorch_model.bin")):
        raise WeightsError(
            f"{directory} holds pytorch_model.bin, a pickle, which mmjax does not load; save "
            "the model again with save_pretrained(..., safe_serialization=True)"
        )
    raise WeightsError(f"{directory} has no model.safetensors")


def read_state(directory: str) -> dict[str, np.ndarray]:
    """Every tensor of the directory's safetensors files, as float32 NumPy arrays by name."""
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise WeightsError(
            'reading Hugging Face weights needs safetensors: pip install -e ".[convert]"'
        ) from None
    state = {}
    for path in _safetensors_files(directory):
        try:
            tensors = load_file(path)
        except Exception as error:  # noqa: BLE001 - a damaged file: name it
            raise WeightsError(f"cannot read {path}: {error}") from None
        state.update({k: np.asarray(v, np.float32) for k, v in tensors.items()})
    return state


def _configs(directory: str) -> tuple[str, dict, dict | None]:
    """(model_type, config.json, preprocessor_config.json or None) of a directory."""
    config = _read_json(os.path.join(directory, "config.json"))
    kind = config.get("model_type")
    if kind not in IMPORTERS:
        raise WeightsError(
            f"{directory}: model_type {kind!r} has no importer; mmjax imports {sorted(IMPORTERS)}"
        )
    preprocessor_path = os.path.join(directory, "preprocessor_config.json")
    preprocessor = _read_json(preprocessor_path) if os.path.isfile(preprocessor_path) else None
    return kind, config, preprocessor


def architecture(directory: str) -> dict:
    """The DualEncoder config.model entries of the model in `directory`, from its configs only.

    (Reads no weights: for config files, which run before anything is loaded.)
    """
    directory = os.path.abspath(os.path.expanduser(directory))
    kind, config, preprocessor = _configs(directory)
    try:
        return ARCHITECTURES[kind](config, preprocessor)
    except (KeyError, ValueError) as error:
        raise WeightsError(f"{directory}: config.json: {error}") from None


def text_max_len(directory: str) -> int:
    """The longest text (position embeddings) of the text tower saved in `directory`."""
    config = _configs(os.path.abspath(os.path.expanduser(directory)))[1]
    return int(config["text_config"]["max_position_embeddings"])


def load(directory: str) -> Imported:
    """The model saved in `directory` by `save_pretrained`, converted to mmjax's layout."""
    directory = os.path.abspath(os.path.expanduser(directory))
    kind, config, preprocessor = _configs(directory)
    try:
        imported = IMPORTERS[kind](read_state(directory), config, preprocessor)
    except KeyError as error:
        raise WeightsError(f"{directory}: a {kind} checkpoint without {error}") from None
    except ValueError as error:  # an architecture mmjax cannot express exactly
        raise WeightsError(f"{directory}: {error}") from None
    imported.source = f"{imported.source} at {directory}"
    return imported
