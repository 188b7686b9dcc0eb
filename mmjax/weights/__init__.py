"""Start from trained weights: importers of other codebases' weights, and `config.init_from`.

  imported = mmjax.weights.load("clip_dir")       # a save_pretrained directory or a .npz
  imported.params                                  # {"stem/embedding/kernel": array, ...}
  imported.model_entries("dual_encoder")           # the config.model entries they need

Importers (one small file of parameter names each): `hf_clip` (Hugging Face CLIPModel ->
DualEncoder), `hf_vit` (ViTModel -> an image tower), `big_vision` (big_vision ViT .npz, both
ways). `init_from` loads any of them, or another run's workdir, into a new run by regex over
parameter paths; `python -m mmjax.weights` shows and converts weights from the command line.
See docs/weights.md.
"""

from __future__ import annotations

import os

from mmjax.weights.errors import WeightsError
from mmjax.weights.imported import Imported


def load(path: str) -> Imported:
    """The weights at `path`: a Hugging Face save_pretrained directory or a big_vision .npz."""
    from mmjax.weights import big_vision, hf

    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path) and hf.is_hf_directory(path):
        return hf.load(path)
    if os.path.isfile(path) and path.endswith(".npz"):
        return big_vision.load(path)
    raise WeightsError(
        f"{path!r} is neither a Hugging Face save_pretrained directory nor a big_vision .npz"
    )


# What a model takes from another's weights: the image tower, or (VQA) the stem.
TOWER_INCLUDE = {
    "dual_encoder": "",
    "captioner": "^(stem|image_encoder)/",
    "vqa_transformer": "^stem/",
}
_TASK_MODELS = {"retrieval": "dual_encoder", "captioning": "captioner", "vqa": "vqa_transformer"}


def _workdir_architecture(path: str) -> dict:
    """The DualEncoder-named entries of the image tower (or stem) of a workdir's model."""
    import json

    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    entries = dict(config["model"])
    name = entries.pop("name", _TASK_MODELS.get(config.get("task"), ""))
    if name == "captioner" and "encoder_depth" in entries:
        entries["image_depth"] = entries.pop("encoder_depth")
    if name not in ("dual_encoder", "captioner"):
        entries.pop("depth", None)  # a VQA model's depth is its fusion's, not a tower's
    return entries


def model_entries(path: str, model: str) -> dict:
    """The config.model entries `model` needs to take the weights at `path` exactly.

    `path` is a Hugging Face save_pretrained directory (only its configs are read), a big_vision
    .npz, or an mmjax workdir (its config.json). Raises WeightsError when it is none of them or
    `model` cannot express its architecture.
    """
    from mmjax.weights import hf
    from mmjax.weights.imported import entries_for

    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path) and os.path.isdir(os.path.join(path, "checkpoints")):
        architecture = _workdir_architecture(path)
    elif os.path.isdir(path) and hf.is_hf_directory(path):
        architecture = hf.architecture(path)
    else:
        architecture = load(path).architecture
    try:
        return entries_for(architecture, model)
    except ValueError as error:
        raise WeightsError(f"{path}: {error}") from None


def start_from(path: str, model: str) -> dict:
    """What a config sets to start `model` from the weights at `path` (configs' `init=` arg).

    {"model": config.model entries (`model_entries`), "include" and "exclude": the init_from
    regexes (everything the source has for `model`: all of a dual encoder, but a CLIP's
    missing logit bias, else its image tower or stem), "tokenizer": the tokenizer entries a
    text tower needs, or None, "max_caption_len": the text tower's longest text, or None}. A
    Hugging Face CLIP's text tower reads the tokenizer.json saved next to it (kind "hf").
    """
    from mmjax.weights import hf

    path = os.path.abspath(os.path.expanduser(path))
    entries = model_entries(path, model)
    has_text = "text_depth" in entries
    start = {
        "model": entries,
        "include": "" if has_text else TOWER_INCLUDE[model],
        "exclude": "",
        "tokenizer": None,
        "max_caption_len": None,
    }
    if has_text and hf.is_hf_directory(path):
        start["exclude"] = "^logit_bias$"  # CLIP has none: the sigmoid loss's starts at init
        start["tokenizer"] = dict(kind="hf", path=path)
        start["max_caption_len"] = hf.text_max_len(path)
    return start


__all__ = ["TOWER_INCLUDE", "Imported", "WeightsError", "load", "model_entries", "start_from"]
