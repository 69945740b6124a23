from .._core import InputError


class ConversionError(InputError):
    """A checkpoint cannot be converted (unknown architecture, missing shard, bad shape...)."""
