"""The tasks' one reader of a record's pixels takes an image or a clip (`checked_image`)."""

import numpy as np
import pytest

from mmjax.data.errors import DataError
from mmjax.tasks.base import checked_image


def test_checked_image_reads_a_clip_under_video_as_is():
    clip = np.random.default_rng(0).integers(0, 256, (4, 8, 6, 3), dtype=np.uint8)
    out = checked_image({"id": 3, "video": clip})
    assert out.shape == (4, 8, 6, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, clip)


def test_checked_image_still_reads_an_image_and_prefers_it_to_a_clip():
    image = np.full((5, 7, 3), 9, np.uint8)
    np.testing.assert_array_equal(checked_image({"id": 1, "image": image}), image)
    both = {"id": 1, "image": image, "video": np.zeros((2, 5, 7, 3), np.uint8)}
    np.testing.assert_array_equal(checked_image(both), image)  # a video dataset's one frame


@pytest.mark.parametrize(
    "record, message",
    [
        (
            {"id": 2, "video": np.zeros((8, 6, 3), np.uint8)},
            r"record 2: video is uint8\[8, 6, 3\], not uint8 TxHxWx3",
        ),
        ({"id": 2, "video": np.zeros((2, 8, 6, 3), np.float32)}, r"video is float32"),
        (
            {"id": 2, "image": np.zeros((2, 8, 6, 3), np.uint8)},
            r"image is uint8\[2, 8, 6, 3\], not uint8 HxWx3",
        ),
        ({"id": 5}, r"record 5: has no 'image' or 'video'"),
    ],
)
def test_checked_image_names_the_record_and_the_problem(record, message):
    with pytest.raises(DataError, match=message):
        checked_image(record)
