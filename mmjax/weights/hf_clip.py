"""Hugging Face `CLIPModel` -> mmjax `DualEncoder`: the parameter names and the architecture.

  text_model.embeddings.token_embedding        text_encoder/embedding/token_embedding
  text_model.embeddings.position_embedding     text_encoder/embedding/pos_embedding
  text_model.encoder.layers.<i>.*              text_encoder/encoder/block_<i>/*
  text_model.final_layer_norm                  text_encoder/encoder/encoder_norm
  vision_model.embeddings.class_embedding      stem/cls                  [D] -> [1, 1, D]
  vision_model.embeddings.patch_embedding      stem/embedding/kernel     (no bias)
  vision_model.embeddings.position_embedding   stem/posemb/pos_embedding [1 + N, D] -> [1, 1 + N, D]
  vision_model.pre_layrnorm                    image_encoder/input_norm
  vision_model.encoder.layers.<i>.*            image_encoder/block_<i>/*
  vision_model.post_layernorm                  image_encoder/encoder_norm   (on every token;
                                                                             CLIP reads the first)
  visual_projection / text_projection          image_projection / text_projection (no bias)
  logit_scale                                  log_logit_scale

and in each layer: layer_norm1 -> ln_1, self_attn.{q,k,v,out}_proj -> attn/{query,key,value,out},
layer_norm2 -> ln_2, mlp.fc1 / fc2 -> mlp/fc1 / fc2.

The text tower is causal and reads its embedding at the EOS token: the first position of
text_config.eos_token_id, or, for configs from before transformers#24773 that say
eos_token_id=2, the position of the largest id (`DualEncoder.eos_id=-2`). No id is padding
(pad_id=-1): with the causal mask, positions after EOS never reach the embedding, so texts of
any length padded with anything give the embedding of the unpadded text.
"""

from __future__ import annotations

import numpy as np

from mmjax.weights import torch_layout
from mmjax.weights.imported import Imported

# CLIPImageProcessor's defaults (OpenAI's), used when the directory has no preprocessor config.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_LAYER = dict(
    ln_1="layer_norm1",
    query="self_attn.q_proj",
    key="self_attn.k_proj",
    value="self_attn.v_proj",
    out="self_attn.out_proj",
    ln_2="layer_norm2",
    fc1="mlp.fc1",
    fc2="mlp.fc2",
)


def _tower(state, prefix: str, dest: str, num_heads: int) -> dict:
    """Every encoder layer under `prefix`encoder.layers.<i>. as mmjax blocks under `dest`."""
    layers = f"{prefix}encoder.layers."
    params = {}
    for i in torch_layout.layer_indices(state, layers):
        block = torch_layout.encoder_block(f"{layers}{i}.", _LAYER, state, num_heads)
        params.update({f"{dest}/block_{i}/{k}": v for k, v in block.items()})
    return params


def _norm(state, name: str, dest: str) -> dict:
    return {f"{dest}/scale": state[f"{name}.weight"], f"{dest}/bias": state[f"{name}.bias"]}


def convert(state: dict[str, np.ndarray], config: dict, preprocessor: dict | None) -> Imported:
    """A CLIPModel's state dict and config.json (and preprocessor_config.json) -> `Imported`."""
    state = torch_layout.Tracked(state)
    text, vision = config["text_config"], config["vision_config"]
    th, vh = text["num_attention_heads"], vision["num_attention_heads"]
    v, t = "vision_model.", "text_model."
    params = {
        "stem/cls": state[f"{v}embeddings.class_embedding"].reshape(1, 1, -1),
        "stem/embedding/kernel": torch_layout.conv_kernel(
            state[f"{v}embeddings.patch_embedding.weight"]
        ),
        "stem/posemb/pos_embedding": state[f"{v}embeddings.position_embedding.weight"][None],
        **_norm(state, f"{v}pre_layrnorm", "image_encoder/input_norm"),
        **_tower(state, v, "image_encoder", vh),
        **_norm(state, f"{v}post_layernorm", "image_encoder/encoder_norm"),
        "text_encoder/embedding/token_embedding/embedding": state[
            f"{t}embeddings.token_embedding.weight"
        ],
        "text_encoder/embedding/pos_embedding": state[f"{t}embeddings.position_embedding.weight"],
        **_tower(state, t, "text_encoder/encoder", th),
        **_norm(state, f"{t}final_layer_norm", "text_encoder/encoder/encoder_norm"),
        "image_projection/kernel": torch_layout.dense_kernel(state["visual_projection.weight"]),
        "text_projection/kernel": torch_layout.dense_kernel(state["text_projection.weight"]),
        "log_logit_scale": np.asarray(state["logit_scale"]).reshape(()),
    }
    arch = architecture(config, preprocessor)
    scale = float(np.exp(np.asarray(state["logit_scale"])))
    # CLIP does not clip its scale when it computes logits (OpenAI's training clamps it at
    # 100); mmjax clips at max_logit_scale, so a larger one is kept whole.
    arch["max_logit_scale"] = max(arch["max_logit_scale"], float(np.ceil(scale)))
    return Imported(params, arch, state.unread(), "Hugging Face CLIPModel", inputs(config))


def architecture(config: dict, preprocessor: dict | None = None) -> dict:
    """The DualEncoder config.model entries of a CLIPModel's config.json (and preprocessor)."""
    text, vision = config["text_config"], config["vision_config"]
    for key, default in (("hidden_act", "quick_gelu"), ("layer_norm_eps", 1e-5)):
        if text.get(key, default) != vision.get(key, default):
            raise ValueError(f"the text and vision towers differ in {key}; mmjax has one")
    eos = text.get("eos_token_id", 49407)
    preprocessor = preprocessor or {}
    return dict(
        stem="patch",
        patch_size=vision["patch_size"],
        posemb="learn",
        patch_kernel=0,  # every patch, embedded from itself alone
        keep_tokens=0,
        token_selector="",
        class_token="with_posemb",
        patch_bias=False,
        image_input_norm=True,
        image_pool="cls",
        width=vision["hidden_size"],
        image_depth=vision["num_hidden_layers"],
        num_heads=vision["num_attention_heads"],
        mlp_dim=vision["intermediate_size"],
        text_width=text["hidden_size"],
        text_depth=text["num_hidden_layers"],
        text_num_heads=text["num_attention_heads"],
        text_mlp_dim=text["intermediate_size"],
        text_causal=True,
        text_pool="eos",
        pad_id=-1,
        eos_id=-2 if eos == 2 else int(eos),
        embed_dim=config["projection_dim"],
        activation=torch_layout.activation(vision.get("hidden_act", "quick_gelu")),
        layer_norm_eps=float(vision.get("layer_norm_eps", 1e-5)),
        projection_bias=False,
        image_mean=tuple(preprocessor.get("image_mean", CLIP_MEAN)),
        image_std=tuple(preprocessor.get("image_std", CLIP_STD)),
        max_logit_scale=100.0,
    )


def inputs(config: dict) -> dict:
    """What a CLIPModel was trained on: image_size, bos_id, eos_id, max_len (texts)."""
    text, vision = config["text_config"], config["vision_config"]
    return dict(
        bos_id=text.get("bos_token_id"),
        eos_id=text.get("eos_token_id", 49407),
        max_len=text["max_position_embeddings"],
        image_size=vision["image_size"],
    )
