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


__all__ = ["Imported", "WeightsError", "load"]
