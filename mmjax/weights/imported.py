"""What an importer returns: mmjax parameters and the model config entries they need.

`architecture` holds `config.model` entries in `DualEncoder`'s names (the model with both
towers); `entries_for(architecture, model)` gives them for another model: the `Captioner`
takes the image tower's (its depth is `encoder_depth`), the `VQATransformer` the stem's, and a
model that has no field for an entry cannot take the weights exactly, which it says.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# The image tower's DualEncoder fields, and their names in the Captioner (depth differs).
_IMAGE_TOWER = (
    "stem",
    "patch_size",
    "patch_kernel",
    "keep_tokens",
    "token_selector",
    "conv_channels",
    "resnet",
    "posemb",
    "width",
    "image_depth",
    "num_heads",
    "mlp_dim",
    "class_token",
    "patch_bias",
    "image_mean",
    "image_std",
    "image_input_norm",
    "activation",
    "layer_norm_eps",
)
_CAPTIONER_NAMES = {"image_depth": "encoder_depth"}
# The VQATransformer takes only a stem (its fusion blocks see both modalities); these are the
# stem entries it has, and the values it assumes for the entries it lacks.
_VQA_STEM = (
    "stem",
    "patch_size",
    "patch_kernel",
    "keep_tokens",
    "token_selector",
    "posemb",
    "width",
    "conv_channels",
)
_VQA_FIXED = dict(class_token="none", patch_bias=True, image_mean=None, image_std=None)


def entries_for(architecture: dict, model: str) -> dict:
    """`architecture` (DualEncoder config.model entries) as `model`'s entries.

    "dual_encoder": as they are; "captioner": the image tower's; "vqa_transformer": the
    stem's. Raises ValueError when `model` cannot express the architecture exactly.
    """
    if model == "dual_encoder":
        return dict(architecture)
    if model == "captioner":
        return {_CAPTIONER_NAMES.get(k, k): v for k, v in architecture.items() if k in _IMAGE_TOWER}
    if model == "vqa_transformer":
        for key, value in _VQA_FIXED.items():
            if key in architecture and architecture[key] not in (value, (0.5, 0.5, 0.5)):
                raise ValueError(f"the VQA model has no {key}={architecture[key]!r}")
        return {k: v for k, v in architecture.items() if k in _VQA_STEM}
    raise ValueError(
        f"no entries known for model {model!r}; use dual_encoder, captioner or vqa_transformer"
    )


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
        """The config.model entries of `model` for these weights (`entries_for`)."""
        return entries_for(self.architecture, model)
