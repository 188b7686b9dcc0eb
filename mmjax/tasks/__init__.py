"""Tasks by name (`config.task`): each glues a model to a loss and predict functions."""

from mmjax.config_utils import ConfigError


def build_task(config):
    """The task object named by config.task, built from the config."""
    if config.task == "vqa":
        from mmjax.tasks.vqa import VQATask

        return VQATask(config)
    if config.task == "autoencoding":
        from mmjax.tasks.autoencoding import AutoencodingTask

        return AutoencodingTask(config)
    if config.task == "captioning":
        from mmjax.tasks.captioning import CaptioningTask

        return CaptioningTask(config)
    if config.task == "retrieval":
        from mmjax.tasks.retrieval import RetrievalTask

        return RetrievalTask(config)
    known = ["autoencoding", "captioning", "retrieval", "vqa"]
    raise ConfigError(f"config.task={config.task!r} is not one of {known}")
