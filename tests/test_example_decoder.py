"""ExampleDecoder gives exactly what TFDS's own decoding gives, record for record."""

import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mmjax.data.example_decoder import ExampleDecoder
from mmjax.projects.sort_of_clevr import tfds_builder as soc_tfds


def assert_same(ours, theirs, where=""):
    """Same nesting, same Python types, same dtypes, shapes and values."""
    assert type(ours) is type(theirs), where
    if isinstance(theirs, dict):
        assert sorted(ours) == sorted(theirs), where
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}/{key}")
    elif isinstance(theirs, np.ndarray):
        assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), where
        np.testing.assert_array_equal(ours, theirs, err_msg=where)
    else:
        assert ours == theirs, where


def test_sort_of_clevr_records_decode_as_tfds_decodes_them(tmp_path):
    builder = soc_tfds.build_sort_of_clevr(tmp_path, num_train=12, num_test=4)
    raw = builder.as_data_source(deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    decode = ExampleDecoder(builder.info.features)
    for split, n in (("train", 12), ("test", 4)):
        tfds_source = builder.as_data_source()[split]
        ours = soc_tfds.load_sort_of_clevr(tmp_path, split, num_train=12, num_test=4)
        for i in range(n):
            assert_same(decode(raw[split][i]), tfds_source[i], f"{split}[{i}]")
            assert_same(ours[i], tfds_source[i], f"{split}[{i}]")
    # Picklable, for grain's worker processes.
    assert_same(pickle.loads(pickle.dumps(decode))(raw["test"][0]), decode(raw["test"][0]))


def test_other_feature_kinds_decode_as_tfds_decodes_them():
    features = tfds.features.FeaturesDict(
        {
            "score": tfds.features.Scalar(dtype=np.float32),
            "weights": tfds.features.Tensor(shape=(2, 3), dtype=np.float32),
            "pixels": tfds.features.Tensor(
                shape=(2, 2), dtype=np.int16, encoding=tfds.features.Encoding.BYTES
            ),
            "name": tfds.features.Text(),
            "tags": tfds.features.Sequence(tfds.features.Text()),
            "nested": {"count": tfds.features.Scalar(dtype=np.int32)},
        }
    )
    example = {
        "score": 0.25,
        "weights": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        "pixels": np.array([[-3, 300], [7, -32000]], np.int16),
        "name": "a red square",
        "tags": ["left", "", "top"],
        "nested": {"count": -4},
    }
    record = features.serialize_example(example)
    assert_same(ExampleDecoder(features)(record), features.deserialize_example_np(record))


def test_unplannable_feature_and_missing_key_are_named():
    ragged = tfds.features.FeaturesDict({"ids": tfds.features.Sequence(np.int64)})
    with pytest.raises(NotImplementedError, match="ids"):
        ExampleDecoder(ragged)
    png = tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(4, 4, 3))})
    with pytest.raises(NotImplementedError, match="image: Image"):
        ExampleDecoder(png)
    both = tfds.features.FeaturesDict({"a": np.int64, "b": np.int64})
    only_a = tfds.features.FeaturesDict({"a": np.int64}).serialize_example({"a": 1})
    with pytest.raises(KeyError, match="'b'"):
        ExampleDecoder(both)(only_a)
