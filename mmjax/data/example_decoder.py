"""Decode TFDS tf.Example records straight from their bytes, as TFDS's own decoding would.

TFDS's NumPy path (`FeaturesDict.deserialize_example_np`) parses a record through generic
per-key machinery for every record, which on a small CPU cost more than the rest of the input
pipeline together. `ExampleDecoder` plans each key once from the features' serialized and
decoded specs and then only converts values (a fraction of the time), returning the same
nested dict: numeric tensors as arrays of the decoded dtype and shape, numeric scalars as
Python numbers, text as bytes (scalars) or lists of bytes, and tensors stored with
`Encoding.BYTES` (raw pixels) as arrays viewed on the record's bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

Decoded = dict


def _flatten(nest: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in nest.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[prefix + key] = value
    return flat


def _is_string(dtype) -> bool:
    return np.dtype(dtype).kind in "OSU"


def _from_bytes(dtype, shape, value):
    return np.frombuffer(value.bytes_list.value[0], dtype).reshape(shape)


def _text_list(value):
    return list(value.bytes_list.value)


def _text(value):
    return value.bytes_list.value[0]


def _scalar(kind, cast, value):
    return cast(getattr(value, kind).value[0])


def _array(kind, dtype, shape, value):
    return np.asarray(getattr(value, kind).value, dtype).reshape(shape)


def _converter(key: str, feature, serialized, decoded) -> Callable:
    """The function Feature proto -> decoded value for one flat key (picklable)."""
    dtype, shape = np.dtype(decoded.np_dtype), tuple(decoded.shape)
    if None in shape[1:] or (None in shape and not _is_string(dtype)):
        raise NotImplementedError(f"{key}: shape {shape}")
    if _is_string(serialized.np_dtype) and not _is_string(dtype):
        # Only raw bytes can be viewed as an array; images are PNG/JPEG, ZLIB is compressed.
        if getattr(feature, "_encoding", None) != tfds.features.Encoding.BYTES:
            raise NotImplementedError(f"{key}: {type(feature).__name__} stored as bytes")
        return functools.partial(_from_bytes, dtype, shape)
    if _is_string(dtype):
        return _text_list if shape else _text
    kind = "float_list" if dtype.kind == "f" else "int64_list"
    if not shape:
        return functools.partial(_scalar, kind, float if dtype.kind == "f" else int)
    return functools.partial(_array, kind, dtype, shape)


class ExampleDecoder:
    """Callable: serialized tf.Example bytes -> the nested dict TFDS decodes them to.

    Built from a `tfds.features.FeaturesDict` whose leaves are tensors, scalars or text of
    fixed shape (a variable first dimension only for text). Raises NotImplementedError naming
    the first key it cannot plan (PNG/JPEG images, ZLIB-compressed or ragged numeric tensors:
    datasets with those keep TFDS's decoding).
    """

    def __init__(self, features):
        serialized = _flatten(features.get_serialized_info())
        decoded = _flatten(features.get_tensor_info())
        self._plan = []
        for key in serialized:
            feature = features
            for part in key.split("/"):
                feature = feature[part]
            convert = _converter(key, feature, serialized[key], decoded[key])
            self._plan.append((key, key.split("/"), convert))

    def __call__(self, record: bytes) -> Decoded:
        """Decode one serialized record; a missing key raises KeyError naming it."""
        feature = tf_example_pb2.Example.FromString(record).features.feature
        out: Decoded = {}
        for key, path, convert in self._plan:
            if key not in feature:
                raise KeyError(f"feature {key!r} missing from the record")
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = convert(feature[key])
        return out


class DecodedSource:
    """A random-access source of raw records decoded by `decode`: len and [i] -> decoded.

    raw: a random-access source of serialized records (len and __getitem__).
    """

    def __init__(self, raw: Sequence[bytes], decode: Callable[[bytes], Decoded]):
        self._raw = raw
        self._decode = decode

    def __len__(self) -> int:
        return len(self._raw)

    def __getitem__(self, index: int) -> Decoded:
        return self._decode(self._raw[index])
