"""DataError: a dataset record or file that cannot be used, named in one line."""


class DataError(ValueError):
    """A record, text or file of the input data is unreadable or out of range.

    The message names the dataset, split and record (or the file) and what is wrong with it.
    """
