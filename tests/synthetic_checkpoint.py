"""A Gemma 4 Unified checkpoint in the Hugging Face layout written straight from NumPy (no
torch): config.json, a small BPE tokenizer.json, and safetensors shards with random weights.
For tests and benchmarks that need real dimensions or many layers; the tensor names follow
the on-disk layout that tests/fixtures/tiny_checkpoints.py checks against transformers."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

S, F = "sliding_attention", "full_attention"


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray]):
    header, offset = {}, 0
    for name, a in tensors.items():
        dt = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}[a.dtype]
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for a in tensors.values():
            f.write(np.ascontiguousarray(a).tobytes())


def tokenizer_json(n_tokens: int) -> dict:
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    vocab = {t: i for i, t in enumerate(specials)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    letters = ["▁"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    for c in letters:
        vocab[c] = len(vocab)
    while len(vocab) < n_tokens:
        vocab[f"<unused{len(vocab)}>"] = len(vocab)
    return {"version": "1.0", "added_tokens": [{"id": i, "content": t, "special": True, "single_word": False,
                                                 "lstrip": False, "rstrip": False, "normalized": False}
                                                for i, t in enumerate(specials)],
            "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
            "model": {"type": "BPE", "byte_fallback": True, "vocab": vocab, "merges": [["▁", "a"], ["a", "b"]]}}


def write_checkpoint(outdir, hidden=256, intermediate=1024, n_layers=12, n_heads=4, n_kv=2, head_dim=64,
                     global_head_dim=128, n_tokens=1024, window=128, shard_bytes=64 << 20, seed=0,
                     mm_embed_dim=32) -> Path:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    types = [F if (i % 6 == 5 or i == n_layers - 1) else S for i in range(n_layers)]

    def w(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.05).astype(np.float32)

    def norm(n):
        return rng.uniform(0.5, 1.5, n).astype(np.float32)

    t: dict[str, np.ndarray] = {}
    p = "model.language_model."
    t[p + "embed_tokens.weight"] = w(n_tokens, hidden)
    t[p + "norm.weight"] = norm(hidden)
    for i in range(n_layers):
        hd = head_dim if types[i] == S else global_head_dim
        q = f"{p}layers.{i}."
        t[q + "input_layernorm.weight"] = norm(hidden)
        t[q + "self_attn.q_proj.weight"] = w(n_heads * hd, hidden)
        t[q + "self_attn.k_proj.weight"] = w(n_kv * hd, hidden)
        t[q + "self_attn.v_proj.weight"] = w(n_kv * hd, hidden)
        t[q + "self_attn.o_proj.weight"] = w(hidden, n_heads * hd)
        t[q + "self_attn.q_norm.weight"] = norm(hd)
        t[q + "self_attn.k_norm.weight"] = norm(hd)
        for n in ("post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"):
            t[q + n + ".weight"] = norm(hidden)
        t[q + "mlp.gate_proj.weight"] = w(intermediate, hidden)
        t[q + "mlp.up_proj.weight"] = w(intermediate, hidden)
        t[q + "mlp.down_proj.weight"] = w(hidden, intermediate)
        t[q + "layer_scalar"] = norm(1)
    v = "model.vision_embedder."
    t[v + "patch_ln1.weight"], t[v + "patch_ln1.bias"] = norm(6912), w(6912)
    t[v + "patch_dense.weight"], t[v + "patch_dense.bias"] = w(mm_embed_dim, 6912), w(mm_embed_dim)
    t[v + "patch_ln2.weight"], t[v + "patch_ln2.bias"] = norm(mm_embed_dim), w(mm_embed_dim)
    t[v + "pos_embedding"] = w(1120, 2, mm_embed_dim)
    t[v + "pos_norm.weight"], t[v + "pos_norm.bias"] = norm(mm_embed_dim), w(mm_embed_dim)
    t["model.embed_vision.embedding_projection.weight"] = w(hidden, mm_embed_dim)
    t["model.embed_audio.embedding_projection.weight"] = w(hidden, 640)

    shards, cur, size = [], {}, 0
    for name, a in t.items():
        if cur and size + a.nbytes > shard_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[name] = a
        size += a.nbytes
    shards.append(cur)
    weight_map = {}
    for k, shard in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        _write_safetensors(outdir / fname, shard)
        weight_map.update({name: fname for name in shard})
    (outdir / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    text = {"model_type": "gemma4_unified_text", "hidden_size": hidden, "intermediate_size": intermediate,
            "num_hidden_layers": n_layers, "num_attention_heads": n_heads, "num_key_value_heads": n_kv,
            "head_dim": head_dim, "layer_types": types, "sliding_window": window, "vocab_size": n_tokens,
            "per_layer_config": {str(i): {"head_dim": global_head_dim} for i in range(n_layers) if types[i] == F},
            "rope_parameters": {F: {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1e6},
                                S: {"rope_type": "default", "rope_theta": 1e4}},
            "rms_norm_eps": 1e-6, "max_position_embeddings": 262144, "final_logit_softcapping": 30.0,
            "num_kv_shared_layers": 0, "attention_k_eq_v": False, "use_double_wide_mlp": False,
            "tie_word_embeddings": True, "moe_intermediate_size": None}
    config = {"architectures": ["Gemma4UnifiedForConditionalGeneration"], "model_type": "gemma4_unified",
              "text_config": text,
              "vision_config": {"model_type": "gemma4_unified_vision", "patch_size": 16, "pooling_kernel_size": 3,
                                "mm_embed_dim": mm_embed_dim, "mm_posemb_size": 1120, "output_proj_dims": mm_embed_dim},
              "audio_config": {"model_type": "gemma4_unified_audio", "audio_embed_dim": 640},
              "tie_word_embeddings": True}
    (outdir / "config.json").write_text(json.dumps(config, indent=1))
    (outdir / "tokenizer.json").write_text(json.dumps(tokenizer_json(n_tokens)))
    (outdir / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<bos>", "eos_token": "<eos>",
                                                              "pad_token": "<pad>", "unk_token": "<unk>"}))
    return outdir
