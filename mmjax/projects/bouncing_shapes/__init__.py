"""The built-in video project: bouncing shapes, generated locally from a seed.

Importing it registers the dataset "bouncing_shapes" (`dataset.BouncingShapes`). Modules:
`motion` (objects, motion, renderer), `questions` (families, answer rules, balanced sampler),
`captions` (captions and the motion checker `captions.motion_accuracy`), `clips` (one clip
from (seed, split, index)), `tfds_builder`, `dataset` (the dataset contract), `baselines`,
`evals` (config helpers), `single_frame` (what one frame tells about the answers) and
`NOTES.md` (design notes).
"""

from mmjax import registry

_HERE = "mmjax.projects.bouncing_shapes"

registry.DATASETS.register("bouncing_shapes", f"{_HERE}.dataset:BouncingShapes")
