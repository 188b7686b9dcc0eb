"""Sort-of-CLEVR as a TFDS dataset stored in ArrayRecord, built and read without TensorFlow.

    builder = build_sort_of_clevr("~/tensorflow_datasets")  # once; a no-op afterwards
    source = load_sort_of_clevr("~/tensorflow_datasets", "train")
    record = source[0]  # random access; len(source) == 9800

Three splits: "train" (`num_train`, 9800 scenes by default), "validation" (`num_validation`,
200 by default) and "test" (`num_test`, 200 by default), each from its own seed stream of
`scenes.scene_rng`. Design choices and evaluations during training use "validation"; "test" is
scored once, at the end. Train and test scenes are the same as before the validation split
existed, for the same seed and sizes.

Each setting (sizes, image size, seed) gets its own config name, e.g.
"n9800_v200_t200_s75_seed0" (train, validation and test sizes), hence its own directory
`<data_dir>/sort_of_clevr/<config>/1.0.0`. A dataset built before the validation split existed
(named like "n9800_200_s75_seed0") is never reused: it is built again under the new name.
Records are written in index order (shuffling disabled), so `source[i]` is scene i of
`scenes.scene_rng`.

A decoded record (`source[i]`, read with NumPy only) is a nested dict:
  "id": int (the scene index within its split);
  "image": np.uint8[S, S, 3];
  "objects": {"color": np.int32[6], "shape": np.int32[6], "center": np.int32[6, 2] as (x, y)};
  "questions": {"color", "relational", "subtype", "answer": np.int32[20],
                "code": np.uint8[20, 11], "text": list of 20 bytes};
  "captions": list of 5 bytes.
Text comes back as UTF-8 `bytes`, not `str`: `.decode()` it before tokenizing. TFDS logs a
"Using custom data configuration" warning for any non-default setting; it is harmless.
"""

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds
import tqdm

from mmjax.data.example_decoder import DecodedSource, ExampleDecoder
from mmjax.projects.sort_of_clevr import scenes as soc

_DESCRIPTION = """Sort-of-CLEVR (Santoro et al. 2017): 75x75 scenes of six colored squares and
circles, 20 relational and non-relational questions each, and reference captions. Generated
locally from a seed by mmjax.projects.sort_of_clevr.scenes. Splits: train, validation (for
design choices and evaluations during training) and test (scored once, at the end)."""


@dataclasses.dataclass(eq=False)
class SortOfClevrConfig(tfds.core.BuilderConfig):
    """Sizes, image side and seed of one Sort-of-CLEVR build; `name` must come from them."""

    num_train: int = 9800
    num_validation: int = 200
    num_test: int = 200
    image_size: int = 75
    seed: int = 0


def config_name(
    num_train: int, num_test: int, image_size: int, seed: int, *, num_validation: int = 200
) -> str:
    """Returns the config name encoding every setting, e.g. "n9800_v200_t200_s75_seed0".

    The sizes read train, validation ("v") and test ("t"). Names from before the validation
    split ("n9800_200_s75_seed0") never match one of these, so such a build is not reused.
    """
    return f"n{num_train}_v{num_validation}_t{num_test}_s{image_size}_seed{seed}"


def make_config(
    num_train: int = 9800,
    num_test: int = 200,
    image_size: int = 75,
    seed: int = 0,
    *,
    num_validation: int = 200,
) -> SortOfClevrConfig:
    """Returns the config of these settings, named by `config_name`.

    `num_validation` scenes (default 200) form the "validation" split, used for design choices
    and evaluations during training; the "test" split is scored once, at the end.
    """
    name = config_name(num_train, num_test, image_size, seed, num_validation=num_validation)
    return SortOfClevrConfig(
        name=name,
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
        image_size=image_size,
        seed=seed,
    )


class SortOfClevr(tfds.core.GeneratorBasedBuilder):
    """TFDS builder "sort_of_clevr", splits "train", "validation", "test"; see the module doc."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [SortOfClevrConfig(name=config_name(9800, 200, 75, 0, num_validation=200))]

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> None:
        """None: there is no checksums file next to this builder.

        TFDS's own lookup imports `importlib_resources`, which tensorflow-datasets 4.9.10 only
        declares for Python < 3.9 (tensorflow/datasets#11212), so it fails on a clean install.
        """
        return None

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        n_obj, n_q = soc.NUM_OBJECTS, soc.NUM_QUESTIONS

        def ints(*shape):
            return tfds.features.Tensor(shape=shape, dtype=np.int32)

        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Scalar(dtype=np.int64),
                    # Raw pixel bytes: unlike PNG, decoding needs neither TF nor PIL, and
                    # unlike the default list of int64 it is cheap to serialise.
                    "image": tfds.features.Tensor(
                        shape=(size, size, 3),
                        dtype=np.uint8,
                        encoding=tfds.features.Encoding.BYTES,
                    ),
                    "objects": {
                        "color": ints(n_obj),
                        "shape": ints(n_obj),
                        "center": ints(n_obj, 2),
                    },
                    "questions": {
                        "color": ints(n_q),
                        "relational": ints(n_q),
                        "subtype": ints(n_q),
                        "answer": ints(n_q),
                        "code": tfds.features.Tensor(
                            shape=(n_q, soc.QUESTION_CODE_DIM), dtype=np.uint8
                        ),
                        "text": tfds.features.Sequence(tfds.features.Text(), length=n_q),
                    },
                    "captions": tfds.features.Sequence(tfds.features.Text()),
                }
            ),
            # Record i is scene i, so any record can be regenerated from its index.
            disable_shuffling=True,
            homepage="https://arxiv.org/abs/1706.01427",
        )

    def _split_generators(self, dl_manager):
        config = self.builder_config
        return {
            "train": self._generate_examples("train", config.num_train),
            "validation": self._generate_examples("validation", config.num_validation),
            "test": self._generate_examples("test", config.num_test),
        }

    def _generate_examples(self, split: str, num: int):
        config = self.builder_config
        scenes = soc.generate_split(config.seed, num, config.image_size, split)
        for index, scene in enumerate(
            tqdm.tqdm(scenes, total=num, desc=f"sort_of_clevr {split}", unit=" scenes")
        ):
            yield index, {"id": index, **scene}


def sort_of_clevr_builder(
    data_dir: str | os.PathLike,
    *,
    num_train: int = 9800,
    num_validation: int = 200,
    num_test: int = 200,
    image_size: int = 75,
    seed: int = 0,
) -> SortOfClevr:
    """Returns the ArrayRecord builder of these settings under `data_dir`, built or not.

    Its splits hold `num_train`, `num_validation` and `num_test` scenes.
    """
    config = make_config(num_train, num_test, image_size, seed, num_validation=num_validation)
    registered = {c.name for c in SortOfClevr.BUILDER_CONFIGS}
    return SortOfClevr(
        data_dir=os.path.expanduser(os.fspath(data_dir)),
        # A registered config goes by name: unpickling (grain workers) copies the config object,
        # and TFDS rejects a copy of a registered config.
        config=config.name if config.name in registered else config,
        file_format="array_record",
    )


def build_sort_of_clevr(
    data_dir: str | os.PathLike,
    *,
    num_train: int = 9800,
    num_validation: int = 200,
    num_test: int = 200,
    image_size: int = 75,
    seed: int = 0,
) -> SortOfClevr:
    """Generates and writes the dataset under `data_dir` unless it is already there.

    Writes the splits "train" (`num_train` scenes), "validation" (`num_validation`, for design
    choices and evaluations during training) and "test" (`num_test`, scored once at the end).
    TFDS writes into a temporary "incomplete" directory and renames it only once every split
    and the metadata are written, so an interrupted build never looks finished and the next
    call starts over. Returns the prepared builder.
    """
    builder = sort_of_clevr_builder(
        data_dir,
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
        image_size=image_size,
        seed=seed,
    )
    if not builder.is_prepared():
        builder.download_and_prepare()
    return builder


def load_sort_of_clevr(
    data_dir: str | os.PathLike,
    split: str,
    *,
    num_train: int = 9800,
    num_validation: int = 200,
    num_test: int = 200,
    image_size: int = 75,
    seed: int = 0,
):
    """Returns the random-access data source of `split` ("train", "validation" or "test").

    Tune and evaluate during training on "validation"; score "test" once, at the end. The
    sizes and seed pick the build, as in `build_sort_of_clevr`. `len(source)` is the split size
    and `source[i]` the decoded record i (see the module docstring for its structure), decoded
    by `ExampleDecoder`. Raises FileNotFoundError naming the directory when this setting was
    never built.
    """
    builder = sort_of_clevr_builder(
        data_dir,
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
        image_size=image_size,
        seed=seed,
    )
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"Sort-of-CLEVR ({builder.builder_config.name}) is not built in {builder.data_dir}; "
            "run mmjax.projects.sort_of_clevr.tfds_builder.build_sort_of_clevr first"
        )
    raw = builder.as_data_source(deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    return DecodedSource(raw[split], ExampleDecoder(builder.info.features))
