"""Tasks by name (`config.task`): each glues a model to a loss and predict functions."""

from mmjax.config_utils import ConfigError


def build_task(config):
    """The task object named by config.task, built from the config."""
    if config.task == "vqa":
        from mmjax.tasks.vqa import VQATask

        return VQATask(config)
    if config.task == "captioning":
        from mmjax.tasks.captioning import CaptioningTask

        return CaptioningTask(config)
    raise ConfigError(f"config.task={config.task!r} is not one of ['captioning', 'vqa']")
