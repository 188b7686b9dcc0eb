"""The built-in video project: bouncing shapes, generated locally from a seed.

Importing it registers the dataset "bouncing_shapes" (`dataset.BouncingShapes`). The dataset's
modules: `motion` (objects, motion, renderer), `tracks` (drawing tracks from the middle frame
outwards), `questions` (families, answer rules, balanced sampler), `captions` (captions and the
motion checker `captions.motion_accuracy`), `clips` (one clip from (seed, split, index)),
`tfds_builder`, `build` (the build command), `dataset` (the dataset contract), `baselines`,
`balance`, `evals` (config helpers), `single_frame` (what one frame tells about the answers),
`results/` and `NOTES.md` (design notes).
"""

from mmjax import registry

_HERE = "mmjax.projects.bouncing_shapes"

registry.DATASETS.register("bouncing_shapes", f"{_HERE}.dataset:BouncingShapes")
