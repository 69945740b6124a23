"""Chat format layer (Gemma 4 / Gemma 3): see the ``unigemma.chat`` package, re-exported here."""
from .chat import *  # noqa: F401,F403
from .chat import __all__  # noqa: F401
