"""The built-in project: Sort-of-CLEVR (Santoro et al. 2017), generated locally from a seed.

Importing it registers its dataset ("sort_of_clevr"), the Relation Network models of the paper
("relation_network", "cnn_mlp", "question_only"), the scene-caption evaluator
("scene_caption"), the parser of drawn scenes ("drawn_order"), and two model hooks its VQA
transformer uses: the token selector "salient_patches" and the text-to-image bias "pointer".
Entries are lazy: nothing heavy is imported until a config names them.

Modules: `scenes` (the generator), `tfds_builder`, `dataset` (the dataset contract),
`baselines`, `salient`, `pointer`, `relation`, `scene_captions`, `drawn_scenes`, `evals`
(config helpers), `configs/`, the Relation Networks reproduction (`reproduce_relation_networks`,
`relation_networks_report`, `results/`), `probes/` and `NOTES.md` (design notes).
"""

from mmjax import registry

_HERE = "mmjax.projects.sort_of_clevr"

registry.DATASETS.register("sort_of_clevr", f"{_HERE}.dataset:SortOfClevr")
registry.MODELS.register("relation_network", f"{_HERE}.relation:RelationNetwork")
registry.MODELS.register("cnn_mlp", f"{_HERE}.relation:CNNMLP")
registry.MODELS.register("question_only", f"{_HERE}.relation:QuestionOnlyMLP")
registry.EVALUATORS.register("scene_caption", f"{_HERE}.scene_captions:SceneCaptionEvaluator")
registry.EVALUATORS.register("drawn_order", f"{_HERE}.drawn_scenes:DrawnOrderEvaluator")
registry.TOKEN_SELECTORS.register("salient_patches", f"{_HERE}.salient:salient_patch_indices")
registry.TEXT_IMAGE_BIASES.register("pointer", f"{_HERE}.pointer:POINTER_BIAS")
