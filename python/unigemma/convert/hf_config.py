"""Reads a Gemma 4 Unified config.json (target or assistant) into the hyper-parameters the
GGUF files need, and checks it for what we can convert."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConversionError

TARGET_ARCHS = {"Gemma4UnifiedForConditionalGeneration"}
ASSISTANT_ARCHS = {"Gemma4UnifiedAssistantForCausalLM"}


@dataclass
class TextHparams:
    n_layer: int
    hidden: int
    n_ff: list[int]            # per layer (2x on shared layers with use_double_wide_mlp)
    n_head: int
    n_kv_swa: int
    n_kv_full: int | None      # None: no override of the KV-head count on full layers
    head_dim_swa: int
    head_dim_full: int
    layer_is_swa: list[bool]
    sliding_window: int
    n_ctx: int
    rms_eps: float
    rope_theta_full: float
    rope_theta_swa: float
    partial_rotary_full: float
    rope_factor_full: float | None
    n_kv_shared: int
    k_eq_v: bool
    double_wide: bool
    softcap: float | None
    bidirectional: str | None
    vocab_size: int

    def head_dim(self, i: int) -> int:
        return self.head_dim_swa if self.layer_is_swa[i] else self.head_dim_full

    def n_kv(self, i: int) -> int:
        if self.layer_is_swa[i] or self.n_kv_full is None:
            return self.n_kv_swa
        return self.n_kv_full

    def owns_kv(self, i: int) -> bool:
        return i < self.n_layer - self.n_kv_shared

    def rope_freq_factors(self) -> np.ndarray:
        """Proportional RoPE of the full layers as per-pair divisors of the angle: the first
        R = floor(p*hd_f/2) pairs rotate (1.0), the rest get 1e30 (angle ~ 0, identity)."""
        half = self.head_dim_full // 2
        r = int(self.head_dim_full * self.partial_rotary_full / 2)
        return np.array([1.0] * r + [1e30] * (half - r), dtype=np.float32)


def load_config(model_dir: Path) -> dict:
    p = Path(model_dir) / "config.json"
    if not p.is_file():
        raise ConversionError(f"[convert] '{model_dir}' has no config.json")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConversionError(f"[convert] '{p}' is not valid JSON ({e})") from e


def model_kind(config: dict) -> str:
    archs = set(config.get("architectures") or [])
    mt = config.get("model_type")
    if archs & TARGET_ARCHS or mt == "gemma4_unified":
        return "target"
    if archs & ASSISTANT_ARCHS or mt == "gemma4_unified_assistant":
        return "assistant"
    raise ConversionError(
        f"[convert] unsupported architecture {sorted(archs) or mt!r}: unigemma converts "
        f"{sorted(TARGET_ARCHS | ASSISTANT_ARCHS)}")


def _req(d: dict, key: str, where: str):
    if key not in d or d[key] is None:
        raise ConversionError(f"[convert] {where} is missing '{key}'")
    return d[key]


def text_hparams(tc: dict, where: str = "text_config", force_all_shared: bool = False) -> TextHparams:
    L = int(_req(tc, "num_hidden_layers", where))
    H = int(_req(tc, "hidden_size", where))
    layer_types = tc.get("layer_types")
    if not layer_types or len(layer_types) != L:
        raise ConversionError(f"[convert] {where}.layer_types must list {L} layer types")
    bad = [t for t in layer_types if t not in ("sliding_attention", "full_attention")]
    if bad:
        raise ConversionError(f"[convert] {where}.layer_types: unknown layer type {bad[0]!r}")
    is_swa = [t == "sliding_attention" for t in layer_types]
    hd_s = int(_req(tc, "head_dim", where))
    nkv = int(_req(tc, "num_key_value_heads", where))
    plc = {int(k): v for k, v in (tc.get("per_layer_config") or {}).items()}
    hd_f = tc.get("global_head_dim")
    nkv_f = tc.get("num_global_key_value_heads")
    for i in sorted(plc):
        if i < L and not is_swa[i]:
            if hd_f is None and "head_dim" in plc[i]:
                hd_f = plc[i]["head_dim"]
            if nkv_f is None and "num_key_value_heads" in plc[i]:
                nkv_f = plc[i]["num_key_value_heads"]
    if hd_f is None:
        hd_f = hd_s if all(is_swa) else None
    if hd_f is None:
        raise ConversionError(f"[convert] {where}: cannot find the full-attention head_dim "
                              "(global_head_dim or per_layer_config)")
    for i, cfg in plc.items():
        want = hd_s if (i < L and is_swa[i]) else hd_f
        if "head_dim" in cfg and int(cfg["head_dim"]) != want:
            raise ConversionError(f"[convert] {where}.per_layer_config[{i}].head_dim={cfg['head_dim']}: every "
                                  f"{'sliding' if is_swa[i] else 'full'} layer must use {want} (GGUF stores one per type)")
    rp = tc.get("rope_parameters") or {}
    full = rp.get("full_attention", {})
    swa = rp.get("sliding_attention", {})
    if full and full.get("rope_type", "proportional") not in ("proportional", "default"):
        raise ConversionError(f"[convert] {where}: full-attention rope_type {full.get('rope_type')!r} is not supported")
    if swa and swa.get("rope_type", "default") != "default":
        raise ConversionError(f"[convert] {where}: sliding rope_type {swa.get('rope_type')!r} is not supported")
    n_shared = int(tc.get("num_kv_shared_layers") or 0)
    if force_all_shared and n_shared == 0:
        n_shared = L
    I = int(_req(tc, "intermediate_size", where))
    double = bool(tc.get("use_double_wide_mlp", False))
    n_ff = [I * 2 if (double and i >= L - n_shared) else I for i in range(L)]
    if tc.get("attention_bias"):
        raise ConversionError(f"[convert] {where}: attention_bias is not supported")
    if tc.get("hidden_size_per_layer_input"):
        raise ConversionError(f"[convert] {where}: per-layer input embeddings are not part of the unified model")
    return TextHparams(
        n_layer=L, hidden=H, n_ff=n_ff, n_head=int(_req(tc, "num_attention_heads", where)),
        n_kv_swa=nkv, n_kv_full=int(nkv_f) if nkv_f is not None else None, head_dim_swa=hd_s, head_dim_full=int(hd_f),
        layer_is_swa=is_swa, sliding_window=int(_req(tc, "sliding_window", where)),
        n_ctx=int(tc.get("max_position_embeddings", 262144)), rms_eps=float(tc.get("rms_norm_eps", 1e-6)),
        rope_theta_full=float(full.get("rope_theta", 1e6)), rope_theta_swa=float(swa.get("rope_theta", 1e4)),
        partial_rotary_full=float(full.get("partial_rotary_factor", 1.0)), rope_factor_full=full.get("factor"),
        n_kv_shared=n_shared, k_eq_v=bool(tc.get("attention_k_eq_v", False)), double_wide=double,
        softcap=tc.get("final_logit_softcapping"), bidirectional=tc.get("use_bidirectional_attention"),
        vocab_size=int(tc.get("vocab_size", 262144)),
    )


def embedding_scale(hidden: int, dtype: str) -> float:
    """sqrt(hidden) as the reference holds it: rounded to the weight dtype (bf16 62.0 for 3840)."""
    x = np.float32(math.sqrt(hidden))
    if dtype == "BF16":  # the runtime's own bf16 rounding (nearest even)
        from .. import _core

        return float(_core.dequantize(_core.quantize(np.array([x]), "BF16"), "BF16", 1)[0])
    if dtype == "F16":
        return float(np.float16(x))
    return float(x)
