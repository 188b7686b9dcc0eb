"""The error of a bad input to a trained model (an image file, a question, a workdir)."""


class InputError(ValueError):
    """An input that a loaded model cannot take; the message names the input and the problem."""
