"""Hugging Face `ViTModel` -> an mmjax image tower: the parameter names and the architecture.

The image tower is the `stem` and `image_encoder` of a `DualEncoder` or a `Captioner`:

  embeddings.cls_token                         stem/cls                   [1, 1, D]
  embeddings.patch_embeddings.projection       stem/embedding             (conv, with bias)
  embeddings.position_embeddings               stem/posemb/pos_embedding  [1, 1 + N, D]
  encoder.layer.<i>.*                          image_encoder/block_<i>/*
  layernorm                                    image_encoder/encoder_norm

and in each layer: layernorm_before -> ln_1, attention.attention.{query,key,value} ->
attn/{query,key,value}, attention.output.dense -> attn/out, layernorm_after -> ln_2,
intermediate.dense -> mlp/fc1, output.dense -> mlp/fc2 (transformers 5's module names,
layers.<i>.attention.{q,k,v,o}_proj and mlp.fc1 / fc2, are read too). The class token gets the
first of the 1 + N position embeddings (`PatchStem.class_token="with_posemb"`); the encoder's
output, after the final LayerNorm, is ViTModel's last_hidden_state. The pooler (Dense + tanh
on the class token) has no mmjax counterpart and is left out (listed as unused), as is the
head of a ViTForImageClassification checkpoint (whose "vit." prefix is removed).
"""

from __future__ import annotations

import numpy as np

from mmjax.weights import torch_layout
from mmjax.weights.imported import Imported

_LAYERS = (
    (
        "encoder.layer.",
        dict(
            ln_1="layernorm_before",
            query="attention.attention.query",
            key="attention.attention.key",
            value="attention.attention.value",
            out="attention.output.dense",
            ln_2="layernorm_after",
            fc1="intermediate.dense",
            fc2="output.dense",
        ),
    ),
    (
        "layers.",
        dict(
            ln_1="layernorm_before",
            query="attention.q_proj",
            key="attention.k_proj",
            value="attention.v_proj",
            out="attention.o_proj",
            ln_2="layernorm_after",
            fc1="mlp.fc1",
            fc2="mlp.fc2",
        ),
    ),
)


def _without_prefix(state: dict, prefix: str = "vit.") -> dict:
    """`state` with `prefix` removed from the names that have it (when any has)."""
    if not any(k.startswith(prefix) for k in state):
        return state
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


def convert(state: dict[str, np.ndarray], config: dict, preprocessor: dict | None) -> Imported:
    """A ViTModel's state dict and config.json (and preprocessor_config.json) -> `Imported`."""
    state = torch_layout.Tracked(_without_prefix(state))
    heads = config["num_attention_heads"]
    params = {
        "stem/cls": state["embeddings.cls_token"].reshape(1, 1, -1),
        "stem/embedding/kernel": torch_layout.conv_kernel(
            state["embeddings.patch_embeddings.projection.weight"]
        ),
        "stem/embedding/bias": state["embeddings.patch_embeddings.projection.bias"],
        "stem/posemb/pos_embedding": state["embeddings.position_embeddings"].reshape(
            1, -1, config["hidden_size"]
        ),
        "image_encoder/encoder_norm/scale": state["layernorm.weight"],
        "image_encoder/encoder_norm/bias": state["layernorm.bias"],
    }
    depth = 0
    for prefix, names in _LAYERS:
        for i in torch_layout.layer_indices(state, prefix):
            block = torch_layout.encoder_block(f"{prefix}{i}.", names, state, heads)
            params.update({f"image_encoder/block_{i}/{k}": v for k, v in block.items()})
            depth = max(depth, i + 1)
    arch = architecture(config, preprocessor)
    arch["image_depth"] = depth
    inputs = dict(image_size=config.get("image_size"))
    return Imported(params, arch, state.unread(), "Hugging Face ViTModel", inputs)


def architecture(config: dict, preprocessor: dict | None = None) -> dict:
    """The image-tower config.model entries (DualEncoder's names) of a ViTModel's config.json."""
    preprocessor = preprocessor or {}
    patch = config["patch_size"]
    return dict(
        stem="patch",
        patch_size=patch if isinstance(patch, int) else patch[0],
        posemb="learn",
        patch_kernel=0,  # every patch, embedded from itself alone
        keep_tokens=0,
        token_selector="",
        class_token="with_posemb",
        patch_bias=True,
        width=config["hidden_size"],
        image_depth=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"],
        mlp_dim=config["intermediate_size"],
        activation=torch_layout.activation(config.get("hidden_act", "gelu")),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        image_mean=tuple(preprocessor.get("image_mean", (0.5, 0.5, 0.5))),
        image_std=tuple(preprocessor.get("image_std", (0.5, 0.5, 0.5))),
    )
