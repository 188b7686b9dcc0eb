"""Parameter trees as flat {"a/b/c": array} dicts, the form every importer works in.

A path is the parameter's place in the model's params tree, joined by "/", as
`config.sharding.rules` and `config.init_from.include` name it: "stem/embedding/kernel",
"image_encoder/block_0/attn/query/kernel".
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np


def flatten(tree) -> dict[str, object]:
    """{path: leaf} of a nested params dict (leaves may be arrays or ShapeDtypeStructs)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path, simple=True, separator="/"): leaf for path, leaf in leaves}


def unflatten(flat: Mapping[str, object]) -> dict:
    """The nested dict of {path: leaf}: the inverse of `flatten` for dicts of dicts."""
    tree: dict = {}
    for path, leaf in flat.items():
        node = tree
        *parents, name = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = leaf
    return tree


def replace(tree, flat: Mapping[str, object]):
    """`tree` with the leaves at the paths of `flat` replaced by its values (cast to their dtype).

    Works inside jit: the structure of `tree` is kept, only leaves change.
    """

    def one(path, leaf):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        if name not in flat:
            return leaf
        return jax.numpy.asarray(flat[name], leaf.dtype).reshape(leaf.shape)

    return jax.tree_util.tree_map_with_path(one, tree)


def as_numpy(flat: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Each value of `flat` as a NumPy array (from JAX, NumPy or anything array-like)."""
    return {path: np.asarray(value) for path, value in flat.items()}
