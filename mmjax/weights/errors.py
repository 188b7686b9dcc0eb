"""The error of weights that cannot be read or do not fit the model."""

from mmjax.config_utils import ConfigError


class WeightsError(ConfigError):
    """Weights that cannot be read or do not fit; the message names the file or parameter.

    A ConfigError: the config names the weights, and `mmjax.main` reports it as one line
    before anything is written.
    """
