import json

import pytest

from mmjax.config_loader import load_config, load_config_file, validate_config
from mmjax.config_utils import ConfigError
from mmjax.workdir import Workdir

VQA = "configs/vqa_transformer.py"


@pytest.mark.parametrize("size", ["tiny", "small", "default"])
def test_every_size_loads_and_validates(size):
    config = load_config(f"{VQA}:size={size}", [])
    validate_config(config)
    assert config.model.width % config.model.num_heads == 0


def test_typed_arguments_and_overrides():
    config = load_config(f"{VQA}:size=tiny,steps=7", ["optim.lr=3e-4", "model.width=48"])
    assert config.total_steps == 7
    assert config.optim.lr == 3e-4
    assert config.model.width == 48
    assert load_config(f"{VQA}:tiny", ["optim.lr=1"]).optim.lr == 1.0  # int widens to float


@pytest.mark.parametrize(
    "spec,overrides,message",
    [
        (f"{VQA}:size=tiny", ["optim.lrr=3"], "unknown config key 'optim.lrr'; did you mean 'lr'"),
        (f"{VQA}:size=tiny", ["model.width=abc"], "model.width=abc: expected int"),
        (f"{VQA}:size=tiny", ["model.width=1.5"], "model.width=1.5: expected int"),
        (f"{VQA}:size=tiny", ["optim"], "expected --config.<key>=<value>"),
        (f"{VQA}:sise=tiny", [], "unknown config argument 'sise'"),
        (f"{VQA}:size=huge", [], "size='huge' is not one of"),
        (f"{VQA}:steps=many", [], "steps='many': expected int"),
        ("configs/nope.py", [], "config file 'configs/nope.py' does not exist"),
    ],
)
def test_config_mistakes_name_the_key(spec, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config(spec, overrides)


def test_config_file_without_get_config(tmp_path):
    path = tmp_path / "c.py"
    path.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="defines no get_config"):
        load_config_file(str(path))


def test_validation_ranges():
    config = load_config(f"{VQA}:size=tiny", ["batch_size=0"])
    with pytest.raises(ConfigError, match="batch_size=0 must be a positive integer"):
        validate_config(config)


def _saved_workdir(path, config, width=None):
    """A workdir whose config.json is `config`, with model.width changed to `width` if given."""
    saved = json.loads(config.to_json())
    if width is not None:
        saved["model"]["width"] = width
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps(saved))
    return Workdir(path)


def test_checkpoints_of_another_model_shape_are_refused(tmp_path):
    config = load_config(f"{VQA}:size=tiny", [])
    workdir = _saved_workdir(tmp_path, config, width=999)
    (tmp_path / "checkpoints" / "100").mkdir(parents=True)  # a finished checkpoint
    assert workdir.checkpoint_steps() == [100]
    with pytest.raises(
        ConfigError, match="the workdir's checkpoints are of another model.width: 999 -> 32"
    ):
        workdir.check_resumable(config)
    _saved_workdir(tmp_path, config).check_resumable(config)  # same config: fine


def test_a_workdir_without_checkpoints_accepts_another_model(tmp_path):
    config = load_config(f"{VQA}:size=tiny", [])
    workdir = _saved_workdir(tmp_path, config, width=999)
    workdir.check_resumable(config)  # a run that never saved is not bound to its config
    (tmp_path / "checkpoints" / "100.orbax-checkpoint-tmp-0").mkdir(parents=True)
    workdir.check_resumable(config)  # nor is one whose only save is unfinished
    Workdir(tmp_path / "none").check_resumable(config)  # nor a workdir not yet made
