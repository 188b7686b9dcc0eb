"""big_vision ViT checkpoints (.npz) <-> an mmjax image tower, both ways.

The layout is that of big_vision's `models/vit.py` (and its `load`): arrays named by their
path, "/"-joined, in an .npz file, optionally under "params/":

  embedding/{kernel,bias}                                   stem/embedding/*
  pos_embedding [1, N, D]                                   stem/posemb/pos_embedding
  cls [1, 1, D] (pool_type "tok")                           stem/cls
  Transformer/encoderblock_<i>/LayerNorm_0                  image_encoder/block_<i>/ln_1
  Transformer/encoderblock_<i>/MultiHeadDotProductAttention_0/{query,key,value,out}
                                                            image_encoder/block_<i>/attn/*
  Transformer/encoderblock_<i>/LayerNorm_1                  image_encoder/block_<i>/ln_2
  Transformer/encoderblock_<i>/MlpBlock_0/Dense_{0,1}       image_encoder/block_<i>/mlp/fc{1,2}
  Transformer/encoder_norm                                  image_encoder/encoder_norm
  MAPHead_0/{probe,MultiHeadDotProductAttention_0,LayerNorm_0,MlpBlock_0}
                                                            image_map/{probe,attn,norm,mlp}

Flax's attention layout is mmjax's, so arrays are copied as they are (the MAP probe drops a
unit axis). big_vision adds the position embeddings before it puts the class token first, so
its ViTs are `PatchStem.class_token="no_posemb"`; its MLP uses flax's tanh GELU and its
LayerNorms epsilon 1e-6, mmjax's defaults, and its images are scaled to [-1, 1], mmjax's
default normalisation. Like big_vision's `load`, reading also takes scanned checkpoints
(`Transformer/encoderblock/...` stacked over the depth), position embeddings stored under
Transformer/, and the old layout whose pos_embedding also covers the class token (its first
row is added to `cls`). The classification head and pre_logits have no mmjax counterpart and
are listed as unused.
"""

from __future__ import annotations

import os
import re

import numpy as np

from mmjax.weights.errors import WeightsError
from mmjax.weights.imported import Imported

# (big_vision path, mmjax path) templates: {i} a layer number, {leaf} a parameter name,
# {proj} an attention projection.
NAMES = (
    ("embedding/{leaf}", "stem/embedding/{leaf}"),
    ("pos_embedding", "stem/posemb/pos_embedding"),
    ("cls", "stem/cls"),
    ("Transformer/encoderblock_{i}/LayerNorm_0/{leaf}", "image_encoder/block_{i}/ln_1/{leaf}"),
    (
        "Transformer/encoderblock_{i}/MultiHeadDotProductAttention_0/{proj}/{leaf}",
        "image_encoder/block_{i}/attn/{proj}/{leaf}",
    ),
    ("Transformer/encoderblock_{i}/LayerNorm_1/{leaf}", "image_encoder/block_{i}/ln_2/{leaf}"),
    (
        "Transformer/encoderblock_{i}/MlpBlock_0/Dense_0/{leaf}",
        "image_encoder/block_{i}/mlp/fc1/{leaf}",
    ),
    (
        "Transformer/encoderblock_{i}/MlpBlock_0/Dense_1/{leaf}",
        "image_encoder/block_{i}/mlp/fc2/{leaf}",
    ),
    ("Transformer/encoder_norm/{leaf}", "image_encoder/encoder_norm/{leaf}"),
    ("MAPHead_0/probe", "image_map/probe"),
    ("MAPHead_0/MultiHeadDotProductAttention_0/{proj}/{leaf}", "image_map/attn/{proj}/{leaf}"),
    ("MAPHead_0/LayerNorm_0/{leaf}", "image_map/norm/{leaf}"),
    ("MAPHead_0/MlpBlock_0/Dense_0/{leaf}", "image_map/mlp/fc1/{leaf}"),
    ("MAPHead_0/MlpBlock_0/Dense_1/{leaf}", "image_map/mlp/fc2/{leaf}"),
)
_FIELDS = {"i": r"(?P<i>\d+)", "leaf": r"(?P<leaf>[^/]+)", "proj": r"(?P<proj>query|key|value|out)"}


def _pattern(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(r"\{", "{").replace(r"\}", "}").format(**_FIELDS))


_BV_TO_MMJAX = [(_pattern(bv), mm) for bv, mm in NAMES]
_MMJAX_TO_BV = [(_pattern(mm), bv) for bv, mm in NAMES]


def translate(name: str, to_mmjax: bool = True) -> str | None:
    """The other codebase's path of `name` (big_vision -> mmjax, or back); None if it has none."""
    for pattern, template in _BV_TO_MMJAX if to_mmjax else _MMJAX_TO_BV:
        match = pattern.fullmatch(name)
        if match:
            return template.format(**match.groupdict())
    return None


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz file (never unpickled), those under "params/" when it has any."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
    except (OSError, ValueError) as error:
        raise WeightsError(f"cannot read {path}: {error}") from None
    if any(k.startswith("params/") for k in arrays):
        arrays = {k[len("params/") :]: v for k, v in arrays.items() if k.startswith("params/")}
    return arrays


def _fix_layout(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Unstacks scanned blocks; moves old position embeddings to the modern place and layout."""
    scanned = "Transformer/encoderblock/"
    fixed = {}
    for name, value in arrays.items():
        if name.startswith(scanned):
            for i, layer in enumerate(value):
                fixed[f"Transformer/encoderblock_{i}/{name[len(scanned) :]}"] = layer
        elif name in ("Transformer/posembed_input/pos_embedding", "Transformer/pos_embedding"):
            fixed["pos_embedding"] = value
        else:
            fixed[name] = value
    pe = fixed.get("pos_embedding")
    if pe is not None and "cls" in fixed:
        grid = int(np.sqrt(pe.shape[1]))
        if grid * grid + 1 == pe.shape[1]:  # the class token's embedding comes first
            fixed["cls"] = fixed["cls"] + pe[:, :1]
            fixed["pos_embedding"] = pe[:, 1:]
    return fixed


def load(path: str) -> Imported:
    """A big_vision ViT .npz -> `Imported` (an image tower, with a MAP head when it has one)."""
    path = os.path.abspath(os.path.expanduser(path))
    arrays = _fix_layout(_read_npz(path))
    params, unused = {}, []
    for name, value in arrays.items():
        target = translate(name)
        if target is None:
            unused.append(name)
            continue
        params[target] = value.reshape(1, -1) if target == "image_map/probe" else value
    if "stem/embedding/kernel" not in params:
        raise WeightsError(f"{path} has no embedding/kernel: not a big_vision ViT checkpoint")
    if "stem/posemb/pos_embedding" not in params:
        raise WeightsError(
            f"{path} has no pos_embedding (a sincos2d ViT); mmjax's sincos2d frequencies differ "
            "from big_vision's, so it does not load these weights"
        )
    return Imported(params, architecture(params), sorted(unused), f"big_vision ViT at {path}", {})


def architecture(params: dict[str, np.ndarray]) -> dict:
    """The DualEncoder config.model entries of an image tower in mmjax's names."""
    kernel = params["stem/embedding/kernel"]
    depth = len({k.split("/")[1] for k in params if k.startswith("image_encoder/block_")})
    arch = dict(
        stem="patch",
        patch_size=int(kernel.shape[0]),
        posemb="learn",
        patch_kernel=0,  # every patch, embedded from itself alone
        keep_tokens=0,
        token_selector="",
        class_token="no_posemb" if "stem/cls" in params else "none",
        patch_bias="stem/embedding/bias" in params,
        width=int(kernel.shape[-1]),
        image_depth=depth,
        activation="gelu",
        layer_norm_eps=1e-6,
        image_mean=(0.5, 0.5, 0.5),
        image_std=(0.5, 0.5, 0.5),
    )
    if depth:
        arch["num_heads"] = int(params["image_encoder/block_0/attn/query/kernel"].shape[1])
        arch["mlp_dim"] = int(params["image_encoder/block_0/mlp/fc1/kernel"].shape[1])
    if "image_map/probe" in params:
        arch["image_pool"] = "map"
    elif "stem/cls" in params:
        arch["image_pool"] = "cls"
    else:
        arch["image_pool"] = "mean"
    return arch


def save(params: dict[str, np.ndarray], path: str, class_token: str = "none") -> list[str]:
    """Writes the image tower of mmjax `params` ({path: array}) as a big_vision ViT .npz.

    `class_token` is the model's `PatchStem.class_token`: with "with_posemb" the class token's
    position embedding is added to it and left out of pos_embedding, big_vision's layout.
    Parameters outside the image tower are left out; returns the big_vision names written.
    Raises WeightsError for an image-tower parameter big_vision's ViT has no place for (e.g.
    the overlapping patch stem's embedding_norm).
    """
    arrays = {}
    for name, value in params.items():
        value = np.asarray(value)
        target = translate(name, to_mmjax=False)
        if target is None:
            if name.startswith(("stem/", "image_encoder/", "image_map/")):
                raise WeightsError(f"{name} has no place in a big_vision ViT")
            continue
        arrays[target] = value.reshape(1, 1, -1) if target == "MAPHead_0/probe" else value
    if class_token == "with_posemb" and "cls" in arrays:
        pe = arrays["pos_embedding"]
        arrays["cls"] = arrays["cls"] + pe[:, :1]
        arrays["pos_embedding"] = pe[:, 1:]
    tmp = path + ".tmp.npz"  # np.savez adds .npz to names without it
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return sorted(arrays)
