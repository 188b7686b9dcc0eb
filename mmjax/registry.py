"""Registries: names in a config (`config.task`, `config.data.name`, ...) -> what they build.

A project adds its datasets, tasks, models, evaluators and model hooks by registering them
under a name, in the module a config lists in `config.imports` (or, for the projects that ship
with mmjax, in `mmjax.projects.BUILTIN`); nothing in the core names a project. An entry is the
object itself or a lazy "module:attribute" string, imported on first use, so registering costs
no import.
"""

from __future__ import annotations

import importlib
from typing import Any

from mmjax.config_utils import ConfigError


class Registry:
    """A named set of entries of one kind ("task", "dataset", ...).

    `registry.register(name, entry)` or `@registry.register(name)`; `registry.get(name)` returns
    the entry (importing a lazy one) or raises ConfigError naming `key` and the known names.
    """

    def __init__(self, kind: str, key: str):
        self.kind = kind
        self.key = key  # the config key whose value is looked up, for error messages
        self._entries: dict[str, Any] = {}

    def register(self, name: str, entry: Any = None) -> Any:
        """Adds `entry` under `name` (a decorator when `entry` is left out); returns it."""

        def add(obj):
            self._entries[name] = obj
            return obj

        return add if entry is None else add(entry)

    def names(self) -> list[str]:
        """The registered names, sorted (after importing the built-in projects)."""
        _import_builtin_projects()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        _import_builtin_projects()
        return name in self._entries

    def get(self, name: str) -> Any:
        """The entry registered under `name`; ConfigError listing the known names if none."""
        if name not in self:
            raise ConfigError(f"{self.key}={name!r} is not one of {self.names()}")
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attribute)
        return entry


def import_modules(names) -> None:
    """Imports each module of `names` (a config's `imports`), so that it registers its entries.

    Raises ConfigError naming a module that cannot be imported.
    """
    for name in names or ():
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ConfigError(f"config.imports: cannot import {name!r} ({error})") from None


_builtin_imported = False


def _import_builtin_projects() -> None:
    global _builtin_imported
    if not _builtin_imported:
        _builtin_imported = True
        from mmjax.projects import BUILTIN

        import_modules(BUILTIN)


TASKS = Registry("task", "config.task")
DATASETS = Registry("dataset", "data.name")
MODELS = Registry("model", "config.model.name")
EVALUATORS = Registry("evaluator", "evals.<name>.type")
# Model hooks a project supplies by name (see mmjax.models.hooks).
TOKEN_SELECTORS = Registry("token selector", "config.model.token_selector")
TEXT_IMAGE_BIASES = Registry("text-to-image attention bias", "config.model.lookup_bias")


# The core's own entries; a project registers its entries in its own package.
for _name in ("coco_captions", "clevr", "custom"):
    DATASETS.register(_name, "mmjax.data.catalog:CatalogDataset")
TASKS.register("vqa", "mmjax.tasks.vqa:VQATask")
TASKS.register("captioning", "mmjax.tasks.captioning:CaptioningTask")
TASKS.register("retrieval", "mmjax.tasks.retrieval:RetrievalTask")
TASKS.register("autoencoding", "mmjax.tasks.autoencoding:AutoencodingTask")
MODELS.register("vqa_transformer", "mmjax.models.vqa:VQATransformer")
MODELS.register("captioner", "mmjax.models.captioner:Captioner")
MODELS.register("dual_encoder", "mmjax.models.dual_encoder:DualEncoder")
MODELS.register("autoencoder", "mmjax.models.autoencoder:MultimodalAutoencoder")
EVALUATORS.register("captioning", "mmjax.evaluators.captioning:CaptionEvaluator")
EVALUATORS.register("classification", "mmjax.evaluators.classification:ClassificationEvaluator")
EVALUATORS.register("linear_probe", "mmjax.evaluators.reconstruction:LinearProbeEvaluator")
EVALUATORS.register("reconstruction", "mmjax.evaluators.reconstruction:ReconstructionEvaluator")
EVALUATORS.register("retrieval", "mmjax.evaluators.retrieval:RetrievalEvaluator")
EVALUATORS.register("zero_shot", "mmjax.evaluators.zero_shot:ZeroShotEvaluator")
EVALUATORS.register("vqa_accuracy", "mmjax.evaluators.vqa_accuracy:VQAAccuracyEvaluator")
EVALUATORS.register("disparity", "mmjax.evaluators.disparity:DisparityEvaluator")
EVALUATORS.register("counterfactual", "mmjax.evaluators.counterfactual:CounterfactualEvaluator")
