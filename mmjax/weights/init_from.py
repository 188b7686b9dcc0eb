"""`config.init_from`: start a new run from the parameters of a workdir or a weights file.

    config.init_from = dict(
        path="runs/retrieval",        # a workdir, an .npz file or a save_pretrained directory
        include="^(stem|image_encoder)/",  # regex over parameter paths: what is loaded ("": all)
        exclude="",                   # regex: of those, what keeps its initial value
        rename=(),                    # ((regex, replacement), ...) applied to the source's paths
        step=0,                       # a workdir's checkpoint (0: the newest)
        inflate="average",            # optional: 2-D patch kernel -> video tubelet kernel
    )

Paths are the new model's ("stem/embedding/kernel", as `config.sharding.rules` names them).
A parameter is selected when `include` matches it and `exclude` does not (big_vision's
`model_load` with `dont_load`); the rest keep their initial values. Nothing is silently
dropped or left random: a selected parameter that the source lacks, a source parameter the
selection covers that the model lacks (an architecture that differs), and a shape that differs
are errors naming the parameters (and both shapes). Image position embeddings ([1, N, D]) of
another grid are resampled to the model's (`mmjax.weights.posemb`). A 2-D patch kernel
[p, p, C, D] loaded into a video tubelet kernel [t, p, p, C, D] is inflated by the rule
`inflate` ("average": repeated over t and divided by t; "central": at the central frame,
zeros elsewhere; `mmjax.models.video.inflate_kernel`), so a video model starts from an image
model. Values are cast to the model's parameter dtype.

The plan is made before the workdir is written (`Experiment.check_model`), and again when the
train state is first initialised (`mmjax.train.steps`); a resumed run reads its own checkpoint
and not the source. The workdir records the plan in init_from.json (`InitPlan.record`).
"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np

from mmjax.config_utils import ConfigError
from mmjax.weights import posemb, sources, tree
from mmjax.weights.errors import WeightsError

RECORD_FILE = "init_from.json"
DEFAULTS = dict(path="", include="", exclude="", rename=(), step=0)
_LISTED = 8  # names listed in an error before "and N more"


@dataclasses.dataclass
class InitPlan:
    """What `config.init_from` loads into a model.

    Attributes:
      source: the parameters read (`mmjax.weights.sources.Source`).
      loaded: {model path: array} to load, resampled and cast to the model's dtypes.
      resampled: {model path: (source shape, model shape)} of the resampled embeddings.
      inflated: {model path: (source shape, model shape, rule)} of the inflated kernels.
      kept: the model's parameters left at their initial values.
      not_loaded: the source's parameters (after rename) that were not loaded.
    """

    source: sources.Source
    loaded: dict[str, np.ndarray]
    resampled: dict[str, tuple]
    kept: list[str]
    not_loaded: list[str]
    inflated: dict[str, tuple] = dataclasses.field(default_factory=dict)

    def record(self) -> dict:
        """The workdir's record of where the run started from (JSON-serialisable)."""
        return {
            "path": self.source.path,
            "kind": self.source.kind,
            "step": self.source.step,
            "description": self.source.description,
            "loaded": sorted(self.loaded),
            "resampled": {k: [list(a), list(b)] for k, (a, b) in self.resampled.items()},
            **(
                {"inflated": {k: [list(a), list(b), r] for k, (a, b, r) in self.inflated.items()}}
                if self.inflated
                else {}
            ),
            "kept_initial": self.kept,
            "not_loaded": self.not_loaded + list(self.source.unused),
        }

    def save(self, path: str) -> None:
        """Writes `record()` as JSON to `path`."""
        with open(path, "w") as f:
            json.dump(self.record(), f, indent=2)


def is_set(config) -> bool:
    """Whether `config` asks to start from weights (config.init_from.path is not empty)."""
    init = config.get("init_from", None)
    return bool(init and init.get("path", ""))


def _regex(key: str, text: str) -> re.Pattern | None:
    if not text:
        return None
    try:
        return re.compile(text)
    except re.error as error:
        raise ConfigError(f"init_from.{key}={text!r} is not a regex: {error}") from None


def _listing(names) -> str:
    names = sorted(names)
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return ", ".join(names[:_LISTED]) + more


def _renamed(params: dict, rename) -> dict:
    """`params` with each (regex, replacement) of `rename` applied to every path, in order."""
    pairs = []
    for pair in rename or ():
        if len(pair) != 2:
            raise ConfigError(f"init_from.rename entry {pair!r}: expected (regex, replacement)")
        pairs.append((_regex("rename", pair[0]), pair[1]))
    out = {}
    for name, value in params.items():
        for pattern, replacement in pairs:
            name = pattern.sub(replacement, name)
        out[name] = value
    return out


def _selector(init):
    include = _regex("include", init.get("include", ""))
    exclude = _regex("exclude", init.get("exclude", ""))

    def selected(name: str) -> bool:
        return (include is None or bool(include.search(name))) and not (
            exclude is not None and exclude.search(name)
        )

    return selected


def _fit(name: str, value: np.ndarray, target, resampled: dict, inflated=None):
    """`value` shaped for `target`, or None when it cannot be.

    An image posemb is resampled to another grid; with `inflated` = (rule, record dict), a 2-D
    patch kernel is inflated into a tubelet kernel and noted in the record.
    """
    if tuple(value.shape) == tuple(target.shape):
        return value.astype(target.dtype)
    if inflated and value.ndim == 4 and tuple(target.shape[1:]) == tuple(value.shape):
        from mmjax.models.video import inflate_kernel

        rule, record = inflated
        record[name] = (tuple(value.shape), tuple(target.shape), rule)
        return inflate_kernel(value, target.shape[0], rule).astype(target.dtype)
    if name.endswith("pos_embedding") and posemb.can_resample(value.shape, target.shape):
        resampled[name] = (tuple(value.shape), tuple(target.shape))
        return posemb.resample(value, target.shape[1]).astype(target.dtype)
    return None


def make_plan(init, abstract_params) -> InitPlan:
    """The `InitPlan` of config.init_from `init` for a model's params `abstract_params`.

    `abstract_params` may be arrays or ShapeDtypeStructs. Raises WeightsError naming what does
    not fit (see the module docstring).
    """
    source = sources.read(init.path, init.get("step", 0))
    where = source.description
    available = _renamed(source.params, init.get("rename", ()))
    model = tree.flatten(abstract_params)
    selected = _selector(init)
    wanted = [name for name in model if selected(name)]
    if not wanted:
        raise WeightsError("init_from.include/exclude select none of the model's parameters")
    missing = [name for name in wanted if name not in available]
    if missing:
        raise WeightsError(
            f"init_from: {len(missing)} selected parameters of the model are not in {where}: "
            f"{_listing(missing)}; select fewer with init_from.include / exclude"
        )
    homeless = [name for name in available if selected(name) and name not in model]
    if homeless:
        raise WeightsError(
            f"init_from: {len(homeless)} parameters of {where} have no place in the model (its "
            f"architecture differs): {_listing(homeless)}; match config.model, or exclude them"
        )
    loaded, resampled, inflated, mismatched = {}, {}, {}, []
    rule = init.get("inflate", "average")
    if rule not in ("average", "central"):
        raise ConfigError(f"init_from.inflate={rule!r}: use 'average' or 'central'")
    for name in wanted:
        value = _fit(name, np.asarray(available[name]), model[name], resampled, (rule, inflated))
        if value is None:
            mismatched.append(
                f"{name} is {tuple(available[name].shape)} in the source but "
                f"{tuple(model[name].shape)} in the model"
            )
        loaded[name] = value
    if mismatched:
        more = f" (and {len(mismatched) - _LISTED} more)" if len(mismatched) > _LISTED else ""
        raise WeightsError(
            f"init_from: shapes differ from {where}: " + "; ".join(mismatched[:_LISTED]) + more
        )
    kept = sorted(name for name in model if name not in loaded)
    not_loaded = sorted(name for name in available if name not in loaded)
    return InitPlan(source, loaded, resampled, kept, not_loaded, inflated)
