"""The one exception type media preprocessing raises (a subclass of `unigemma.InputError`)."""
from .._core import InputError


class MediaError(InputError):
    """An image, audio clip or video could not be used: unreadable, corrupt, unsupported
    codec, empty, or beyond a size limit. The message names the file and the problem."""
