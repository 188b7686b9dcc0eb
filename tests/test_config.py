import json

import pytest

from mmjax.config_loader import (
    check_against_saved,
    load_config,
    load_config_file,
    validate_config,
)
from mmjax.config_utils import ConfigError

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


def test_saved_config_with_another_model_shape_is_refused():
    config = load_config(f"{VQA}:size=tiny", [])
    check_against_saved(config, config.to_json())  # same config: fine
    saved = json.loads(config.to_json())
    saved["model"]["width"] = 999
    with pytest.raises(ConfigError, match="another model.width: 999 -> 32"):
        check_against_saved(config, json.dumps(saved))
