"""Shared fixtures. Tiny random Gemma 4 Unified checkpoints are built once per session with
transformers (tests/fixtures/tiny_checkpoints.py); tests that need them ask `hf_ckpt(name)`."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "fixtures"))


@pytest.fixture(scope="session")
def hf_ckpt(tmp_path_factory):
    """hf_ckpt(name) -> directory. Names: default, kv_shared, alt_layout, default_bf16,
    alt_layout_bf16 (targets); assistant_<target>[_plain|_bf16] (drafters)."""
    import os

    root = tmp_path_factory.mktemp("hf")
    cache: dict[str, Path] = {}
    # prebuilt checkpoints (`python tests/fixtures/tiny_checkpoints.py DIR`), e.g. for the
    # sanitizer run, where torch is not loaded into the instrumented process
    prebuilt = os.environ.get("UNIGEMMA_TEST_HF_DIR")

    def get(name: str) -> Path:
        if name not in cache and prebuilt and (Path(prebuilt) / name / "config.json").is_file():
            cache[name] = Path(prebuilt) / name
        if name not in cache:
            import tiny_checkpoints as tc

            d = root / name
            if name.startswith("assistant_"):
                rest = name[len("assistant_"):]
                ordered = not rest.endswith("_plain")
                dtype = "bfloat16" if rest.endswith("_bf16") else "float32"
                target = rest.removesuffix("_plain").removesuffix("_bf16")
                cache[name] = tc.make_assistant(d, target, ordered_embeddings=ordered, dtype=dtype)
            else:
                dtype = "bfloat16" if name.endswith("_bf16") else "float32"
                cache[name] = tc.make_target(d, name.removesuffix("_bf16"), dtype=dtype)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def gemma3_hf_tokenizer():
    """transformers' tokenizer rebuilt from the real Gemma 3 270M GGUF (about 18 s to build:
    shared by the tokenizer and the real-weights logits tests)."""
    import unigemma

    transformers = pytest.importorskip("transformers")
    path = Path(unigemma.default_model_path())
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.fixture(scope="session")
def hf_model(hf_ckpt):
    """hf_model(name) -> transformers' Gemma4UnifiedForConditionalGeneration of the target
    fixture `name`, float32, eval; loaded once per session (tests must not modify it in place:
    copy.deepcopy first)."""
    import torch
    from transformers import Gemma4UnifiedForConditionalGeneration

    cache = {}

    def get(name: str):
        if name not in cache:
            cache[name] = Gemma4UnifiedForConditionalGeneration.from_pretrained(
                hf_ckpt(name), dtype=torch.float32).eval()
        return cache[name]

    return get
