"""PyTorch tensor layouts -> mmjax's flax layouts, for the Hugging Face importers.

PyTorch's `nn.Linear` stores weight [out, in] and computes x W^T + b; flax's `nn.Dense` stores
kernel [in, out]. mmjax's `MultiHeadAttention` splits its projections into heads: query, key
and value kernels [D, H, Dh] with biases [H, Dh], and the output kernel [H, Dh, D] (head h is
columns h * Dh ... (h + 1) * Dh of PyTorch's fused [H * Dh] axis, the order both use).
`nn.Conv2d` stores [out, in, kh, kw]; flax's convolutions [kh, kw, in, out].
"""

from __future__ import annotations

import numpy as np


def dense_kernel(weight: np.ndarray) -> np.ndarray:
    """nn.Linear weight [out, in] -> flax Dense kernel [in, out]."""
    return np.ascontiguousarray(weight.T)


def heads_in_kernel(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Query/key/value nn.Linear weight [H * Dh, D] -> kernel [D, H, Dh]."""
    out, width = weight.shape
    return dense_kernel(weight).reshape(width, num_heads, out // num_heads)


def heads_bias(bias: np.ndarray, num_heads: int) -> np.ndarray:
    """Query/key/value bias [H * Dh] -> [H, Dh]."""
    return bias.reshape(num_heads, bias.shape[0] // num_heads)


def heads_out_kernel(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Output nn.Linear weight [D, H * Dh] -> kernel [H, Dh, D]."""
    width, inner = weight.shape
    return dense_kernel(weight).reshape(num_heads, inner // num_heads, width)


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """nn.Conv2d weight [out, in, kh, kw] -> flax kernel [kh, kw, in, out]."""
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def encoder_block(prefix: str, names: dict[str, str], state, num_heads: int) -> dict:
    """One pre-LN transformer block of a Hugging Face checkpoint as mmjax `EncoderBlock` params.

    `names` maps each sub-layer of `EncoderBlock` ("ln_1", "query", "key", "value", "out",
    "ln_2", "fc1", "fc2") to its module name under `prefix` in `state` (a dict of NumPy arrays
    by name, e.g. {"query": "self_attn.q_proj", ...}). A query/key/value without a bias (ViT
    with qkv_bias=False) gets zeros, which computes the same. Returns {mmjax path under the
    block: array}.
    """
    out = {}
    for ln in ("ln_1", "ln_2"):
        out[f"{ln}/scale"] = state[f"{prefix}{names[ln]}.weight"]
        out[f"{ln}/bias"] = state[f"{prefix}{names[ln]}.bias"]
    for proj in ("query", "key", "value"):
        weight = state[f"{prefix}{names[proj]}.weight"]
        bias = state.get(f"{prefix}{names[proj]}.bias", np.zeros(weight.shape[0], weight.dtype))
        out[f"attn/{proj}/kernel"] = heads_in_kernel(weight, num_heads)
        out[f"attn/{proj}/bias"] = heads_bias(bias, num_heads)
    out["attn/out/kernel"] = heads_out_kernel(state[f"{prefix}{names['out']}.weight"], num_heads)
    out["attn/out/bias"] = state[f"{prefix}{names['out']}.bias"]
    for fc in ("fc1", "fc2"):
        out[f"mlp/{fc}/kernel"] = dense_kernel(state[f"{prefix}{names[fc]}.weight"])
        out[f"mlp/{fc}/bias"] = state[f"{prefix}{names[fc]}.bias"]
    return out


def block_names(state, prefix: str, candidates: list[dict[str, str]]) -> dict[str, str]:
    """The entry of `candidates` (naming schemes of one block) whose query weight is in `state`.

    Checkpoints written by different transformers versions name the same modules differently.
    Raises KeyError naming the prefix when none matches.
    """
    for names in candidates:
        if f"{prefix}{names['query']}.weight" in state:
            return names
    raise KeyError(f"no attention weights under {prefix!r} in any known naming")


def layer_indices(state, prefix: str) -> list[int]:
    """The sorted layer numbers i of the keys "<prefix><i>.<...>" in `state`."""
    found = set()
    for key in state:
        if key.startswith(prefix):
            head = key[len(prefix) :].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return sorted(found)


class Tracked(dict):
    """A state dict that remembers which names were read, so that the rest can be reported."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def __getitem__(self, key):
        value = super().__getitem__(key)
        self.read.add(key)
        return value

    def get(self, key, default=None):
        """The value of `key` (marked read) or `default`."""
        return self[key] if key in self else default

    def unread(self) -> list[str]:
        """The names never read, sorted."""
        return sorted(set(self) - self.read)


ACTIVATIONS = {
    # Hugging Face's names -> mmjax's (`mmjax.models.transformer.ACTIVATIONS`).
    "gelu": "gelu_exact",
    "quick_gelu": "quick_gelu",
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
}


def activation(name: str) -> str:
    """The mmjax name of the Hugging Face activation `name`; ValueError for one it lacks."""
    if name not in ACTIVATIONS:
        raise ValueError(
            f"hidden_act={name!r} has no mmjax counterpart; known: {list(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]
