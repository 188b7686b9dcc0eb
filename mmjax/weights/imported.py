"""What an importer returns: mmjax parameters and the model config entries they need.

`architecture` holds `config.model` entries in `DualEncoder`'s names (the model with both
towers); `model_entries(name)` gives them for another model: the `Captioner` takes the image
tower's (its depth is `encoder_depth`), and a model that has no field for an entry cannot
take the weights exactly, which it says.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# DualEncoder field -> Captioner field, for the image tower's entries.
_CAPTIONER_FIELDS = {
    "stem": "stem",
    "patch_size": "patch_size",
    "width": "width",
    "image_depth": "encoder_depth",
    "num_heads": "num_heads",
    "mlp_dim": "mlp_dim",
    "posemb": "posemb",
    "class_token": "class_token",
    "patch_bias": "patch_bias",
    "image_mean": "image_mean",
    "image_std": "image_std",
    "image_input_norm": "image_input_norm",
    "activation": "activation",
    "layer_norm_eps": "layer_norm_eps",
}


@dataclasses.dataclass
class Imported:
    """Weights of another codebase in mmjax's layout.

    Attributes:
      params: {mmjax parameter path: float32 array}, e.g. "stem/embedding/kernel".
      architecture: the `DualEncoder` config.model entries these parameters need.
      unused: names of the source's arrays that have no mmjax parameter (e.g. ViT's pooler,
        a classification head), in the source's naming.
      source: what was read, for messages and the workdir's record.
      inputs: what the source was trained on: "image_size", and for a text tower "bos_id",
        "eos_id" and "max_len" (the longest text).
    """

    params: dict[str, np.ndarray]
    architecture: dict
    unused: list[str]
    source: str
    inputs: dict = dataclasses.field(default_factory=dict)

    def model_entries(self, model: str = "dual_encoder") -> dict:
        """The config.model entries of `model` ("dual_encoder" or "captioner") for these weights.

        Raises ValueError for another model: its config needs the entries set by hand.
        """
        if model == "dual_encoder":
            return dict(self.architecture)
        if model == "captioner":
            return {
                _CAPTIONER_FIELDS[k]: v
                for k, v in self.architecture.items()
                if k in _CAPTIONER_FIELDS
            }
        raise ValueError(f"no entries known for model {model!r}; use dual_encoder or captioner")
