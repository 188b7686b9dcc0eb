"""Bouncing shapes as a TFDS dataset stored in ArrayRecord, built and read without TensorFlow.

    build_bouncing_shapes("~/tensorflow_datasets")  # once; a no-op afterwards
    source = load_bouncing_shapes("~/tensorflow_datasets", "train")
    record = source[0]  # random access; len(source) == num_train

Three splits, each from its own seed stream of `clips.clip_rng`: "train", "validation" (design
choices and evaluations during training) and "test" (scored once, at the end). Each setting
(sizes, frames, image side, objects, seed) gets its own config name, e.g.
"n8000_v500_t500_f8_s64_o4_seed0", hence its own directory
`<data_dir>/bouncing_shapes/<config>/1.0.0`. Records are written in index order (shuffling
disabled), so `source[i]` is clip i of `clips.clip_rng`.

A decoded record (`source[i]`, read with NumPy only) is a nested dict:
  "id": int (the clip's index within its split);
  "video": np.uint8 [T, S, S, 3];
  "objects": {"color", "shape", "wall_hits": int32 [N]; "start", "velocity": int32 [N, 2];
              "position": int32 [N, T, 2]; "hit_wall": int32 [N, T]} (see `clips.sample_objects`);
  "questions": {"family", "subject", "other", "third", "answer": int32 [Q]; "text": Q bytes};
  "captions": list of 5 bytes.
Text comes back as UTF-8 bytes; `dataset.BouncingShapes.source` gives the common layout.
Two builds of one setting hold equal records; the files are byte-identical only when written
by one process (protobuf serialises a record's feature map in a per-process order).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from mmjax.data.example_decoder import DecodedSource, ExampleDecoder
from mmjax.projects.bouncing_shapes import clips, questions

_DESCRIPTION = """Bouncing shapes: short clips of a few coloured squares, disks and triangles
moving at constant velocity and bouncing off the walls, with questions whose answers need the
motion (direction, fastest, slowest, toward/away, wall hits, touch order), two static control
questions and five captions per clip. Generated locally from a seed by
mmjax.projects.bouncing_shapes.clips."""


@dataclasses.dataclass(eq=False)
class BouncingShapesConfig(tfds.core.BuilderConfig):
    """Sizes, clip shape, object count and seed of one build; `name` must come from them."""

    num_train: int = 8000
    num_validation: int = 500
    num_test: int = 500
    num_frames: int = clips.NUM_FRAMES
    image_size: int = clips.IMAGE_SIZE
    num_objects: int = clips.NUM_OBJECTS
    seed: int = 0


SETTINGS = ("num_train", "num_validation", "num_test", "num_frames", "image_size")
SETTINGS += ("num_objects", "seed")


def config_name(
    num_train: int,
    num_validation: int,
    num_test: int,
    num_frames: int,
    image_size: int,
    num_objects: int,
    seed: int,
) -> str:
    """The config name encoding every setting, e.g. "n8000_v500_t500_f8_s64_o4_seed0"."""
    return (
        f"n{num_train}_v{num_validation}_t{num_test}_f{num_frames}_s{image_size}"
        f"_o{num_objects}_seed{seed}"
    )


DEFAULT = dict(
    num_train=8000,
    num_validation=500,
    num_test=500,
    num_frames=clips.NUM_FRAMES,
    image_size=clips.IMAGE_SIZE,
    num_objects=clips.NUM_OBJECTS,
    seed=0,
)


class BouncingShapes(tfds.core.GeneratorBasedBuilder):
    """TFDS builder "bouncing_shapes", splits "train", "validation", "test"; see the module doc."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [BouncingShapesConfig(name=config_name(**DEFAULT))]

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> None:
        """None: no checksums file (as in the Sort-of-CLEVR builder, for the same reason)."""
        return None

    def _info(self) -> tfds.core.DatasetInfo:
        c = self.builder_config
        n, t, q = c.num_objects, c.num_frames, questions.NUM_QUESTIONS

        def ints(*shape):
            return tfds.features.Tensor(shape=shape, dtype=np.int32)

        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Scalar(dtype=np.int64),
                    # Raw pixel bytes, decoded with NumPy alone (as Sort-of-CLEVR's images).
                    "video": tfds.features.Tensor(
                        shape=(t, c.image_size, c.image_size, 3),
                        dtype=np.uint8,
                        encoding=tfds.features.Encoding.BYTES,
                    ),
                    "objects": {
                        "color": ints(n),
                        "shape": ints(n),
                        "start": ints(n, 2),
                        "velocity": ints(n, 2),
                        "position": ints(n, t, 2),
                        "hit_wall": ints(n, t),
                        "wall_hits": ints(n),
                    },
                    "questions": {
                        "family": ints(q),
                        "subject": ints(q),
                        "other": ints(q),
                        "third": ints(q),
                        "answer": ints(q),
                        "text": tfds.features.Sequence(tfds.features.Text(), length=q),
                    },
                    "captions": tfds.features.Sequence(tfds.features.Text()),
                }
            ),
            disable_shuffling=True,  # record i is clip i, rebuildable from its index
        )

    def _split_generators(self, dl_manager):
        c = self.builder_config
        return {
            "train": self._generate_examples("train", c.num_train),
            "validation": self._generate_examples("validation", c.num_validation),
            "test": self._generate_examples("test", c.num_test),
        }

    def _generate_examples(self, split: str, num: int):
        c = self.builder_config
        generated = clips.generate_split(
            c.seed, num, split, c.num_frames, c.image_size, c.num_objects
        )
        for index, clip in enumerate(generated):
            yield index, {"id": index, **clip}


def _settings(**settings) -> dict:
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise TypeError(f"unknown bouncing_shapes settings {sorted(unknown)}")
    return dict(DEFAULT, **settings)


def bouncing_shapes_builder(data_dir: str | os.PathLike, **settings) -> BouncingShapes:
    """The ArrayRecord builder under `data_dir` of `settings` (`SETTINGS`; else `DEFAULT`)."""
    settings = _settings(**settings)
    config = BouncingShapesConfig(name=config_name(**settings), **settings)
    registered = {c.name for c in BouncingShapes.BUILDER_CONFIGS}
    return BouncingShapes(
        data_dir=os.path.expanduser(os.fspath(data_dir)),
        # A registered config goes by name: TFDS rejects a copy of one (grain unpickles copies).
        config=config.name if config.name in registered else config,
        file_format="array_record",
    )


def build_bouncing_shapes(data_dir: str | os.PathLike, **settings) -> BouncingShapes:
    """Generates and writes the dataset of `settings` under `data_dir` unless it is there.

    TFDS writes into a temporary "incomplete" directory and renames it once every split is
    written, so an interrupted build never looks finished. Returns the prepared builder.
    """
    builder = bouncing_shapes_builder(data_dir, **settings)
    if not builder.is_prepared():
        builder.download_and_prepare()
    return builder


def load_bouncing_shapes(data_dir: str | os.PathLike, split: str, **settings):
    """The random-access source of `split` of the build of `settings` (module doc's records).

    Raises FileNotFoundError naming the directory when that build does not exist.
    """
    builder = bouncing_shapes_builder(data_dir, **settings)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"bouncing_shapes ({builder.builder_config.name}) is not built in "
            f"{builder.data_dir}; run "
            "mmjax.projects.bouncing_shapes.tfds_builder.build_bouncing_shapes first"
        )
    raw = builder.as_data_source(deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    return DecodedSource(raw[split], ExampleDecoder(builder.info.features))
