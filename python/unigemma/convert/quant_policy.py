"""Per-tensor GGML type selection, matching llama.cpp exactly.

This module decides, for every tensor of one output GGUF file, which ggml type
it is stored in.  It is pure Python (no torch, no numpy) and importable on its
own.  The rules were derived by reading llama.cpp (as vendored in
llama-cpp-python 0.3.36, upstream commit 0c1e570) and were validated against
the real tools (see ``tools/check_quant_policy.py``).  No llama.cpp code was
copied; this is an independent re-implementation of the behaviour.

Two regimes
-----------

``f32`` / ``f16`` / ``bf16`` / ``q8_0``
    Exactly what ``convert_hf_to_gguf.py --outtype X`` writes (and, for the
    mmproj file, ``convert_hf_to_gguf.py --mmproj --outtype X``).  Rules
    (``ModelBase.prepare_tensors`` in ``conversion/base.py``):

    1. a class-level override (``tensor_force_quant``) is computed first.  For
       our files only the mmproj one matters (``MmprojModel.tensor_force_quant``):
       ``*.patch_embd.weight`` / ``*.patch_merger.weight`` are F16 when the
       outtype is f16, otherwise F32 (so F32 for f32, bf16 *and* q8_0);
    2. tensors with ``n_dims <= 1`` or whose name ends in ``_norm.weight`` are
       F32, whatever step 1 said;
    3. without an override, tensors of a fixed per-architecture list are F32
       (for arch ``clip``: ``v.position_embd.weight`` and
       ``a.position_embd.weight``; for ``gemma4``: ``blk.N.ffn_gate_inp.weight``),
       and so is any tensor whose name does not end in ``.weight`` /
       ``.lora_a`` / ``.lora_b``;
    4. everything else gets the outtype's type (F32 / F16 / BF16 / Q8_0);
    5. if quantizing raises ``QuantError`` (only possible for Q8_0: the row
       length ``ne[0]`` is not a multiple of 32) the tensor is written as F16.

``q4_0`` / ``q4_k_m`` / ``q6_k`` (model files: ``text`` and ``assistant``)
    Exactly what ``llama-quantize F16.gguf OUT.gguf Q4_0|Q4_K_M|Q6_K`` picks
    when fed the F16 file that llama.cpp's converter writes
    (``src/llama-quant.cpp``):

    * ``tensor_allows_quantization``: only tensors with ``ggml_n_dims >= 2``
      (trailing size-1 dims do not count) whose name ends in ``weight`` and is
      not on an exclusion list (``_norm.weight``, ``ffn_gate_inp``,
      ``.position_embd``, ``.patch_embd``, ...) are requantized; the others keep
      the type they have in the F16 file (F32 for 1-D, F16 otherwise);
    * default type per ftype (``llama_ftype_get_default_type``):
      Q4_0 -> Q4_0, Q4_K_M -> Q4_K, Q6_K -> Q6_K;
    * ``llama_tensor_get_type_impl``:

      - ``output.weight``, and ``token_embd.weight`` when the file has no
        ``output.weight`` (tied embeddings, which is the case for all Gemma 4
        text and assistant files): Q8_0 if ``ne[0]`` is not a multiple of the
        default type's block size, otherwise Q6_K (for every one of our three
        ftypes; Q6_K also for Q4_0!);
      - Q4_K_M only: ``attn_v`` (and ``attn_qkv`` / ``attn_kv_b``) of the
        i-th such tensor (counting only the tensors that exist, in llama.cpp's
        sorted order) becomes Q6_K when ``use_more_bits(i, n_attn_v)``;
        ``ffn_down`` of the i-th ffn_down tensor becomes Q6_K when
        ``use_more_bits(i, n_layer)`` (``n_layer`` = ``block_count``);
        (llama.cpp's separate ``attn_qkv`` -> Q5_K branch is unreachable
        because attn_qkv is handled by the attn_v-like branch first);
        ``use_more_bits(i, n) = i < n/8 or i >= 7n/8 or (i - n/8) % 3 == 2``;
      - nothing else changes for these three ftypes (no imatrix, no experts);
    * ``tensor_type_fallback``: if ``ne[0]`` is not a multiple of the chosen
      type's block size, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, a 32-block
      type stays; if the result still does not fit, F16.
    * llama-quantize visits tensors sorted by (layer number, name), with
      non-``blk.`` tensors first (``weight_name_comparer``); the counters above
      follow that order, and the *output file* lists tensors in that order too
      (see :func:`llama_quantize_order`).

    The quantizer reads F16 data (:func:`quant_source_type`), so to be
    byte-identical our converter must round the source weights to F16 first.

``q4_0`` / ``q4_k_m`` / ``q6_k`` for the mmproj file
    llama.cpp users do not run llama-quantize on mmproj files (the converter
    only offers f32/f16/bf16/q8_0 for them), so our choice is: the mmproj file
    uses the **q8_0 converter rules** for these outtypes (F32 patch_embd and
    position_embd, Q8_0 projections), and its ``general.file_type`` is
    MOSTLY_Q8_0 (see :func:`file_type_for`).

Our extra drafter tensors (llama.cpp's converter drops both)
    ``masked_embd_centroids.weight``: follows the token_embd rule of the
    outtype but is never stored below Q8_0.  In practice: F32 for f32, F16 for
    f16, BF16 for bf16, and Q8_0 for q8_0 / q4_0 / q4_k_m / q6_k (llama-quantize
    would pick Q6_K for a tied token_embd, which is raised to Q8_0), with F16 as
    the fallback when ``ne[0]`` is not a multiple of 32 (the converter's
    QuantError rule).  F32 if it is ever 1-D.
    ``masked_embd_ordering`` (integer token permutation, no ``.weight``
    suffix): always I32.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

__all__ = [
    "OUTTYPES",
    "FILE_KINDS",
    "FILE_TYPE",
    "BLOCK_SIZE",
    "choose_tensor_types",
    "quant_source_type",
    "file_type_for",
    "llama_quantize_order",
    "converter_tensor_type",
]

OUTTYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q6_k")
FILE_KINDS = ("text", "mmproj", "assistant")

# general.file_type values (enum llama_ftype in llama.cpp's include/llama.h;
# gguf-py's LlamaFileType has the same numbers).
FILE_TYPE = {
    "f32": 0,      # LLAMA_FTYPE_ALL_F32
    "f16": 1,      # LLAMA_FTYPE_MOSTLY_F16
    "q4_0": 2,     # LLAMA_FTYPE_MOSTLY_Q4_0
    "q8_0": 7,     # LLAMA_FTYPE_MOSTLY_Q8_0
    "q4_k_m": 15,  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    "q6_k": 18,    # LLAMA_FTYPE_MOSTLY_Q6_K
    "bf16": 32,    # LLAMA_FTYPE_MOSTLY_BF16
}

# ggml block sizes (elements per block along ne[0]).
BLOCK_SIZE = {
    "F32": 1, "F16": 1, "BF16": 1, "I8": 1, "I16": 1, "I32": 1, "I64": 1, "F64": 1,
    "Q4_0": 32, "Q4_1": 32, "Q5_0": 32, "Q5_1": 32, "Q8_0": 32, "Q8_1": 32,
    "IQ4_NL": 32, "MXFP4": 32,
    "Q2_K": 256, "Q3_K": 256, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256, "Q8_K": 256,
    "IQ2_XXS": 256, "IQ2_XS": 256, "IQ2_S": 256, "IQ3_XXS": 256, "IQ3_S": 256,
    "IQ1_S": 256, "IQ1_M": 256, "IQ4_XS": 256,
}

_CONVERTER_OUTTYPES = ("f32", "f16", "bf16", "q8_0")
_QUANTIZE_OUTTYPES = ("q4_0", "q4_k_m", "q6_k")

# outtype -> the type every "plain" weight gets from the converter
_CONVERTER_TYPE = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0"}
# llama_ftype_get_default_type for the llama-quantize ftypes we support
_QUANT_DEFAULT_TYPE = {"q4_0": "Q4_0", "q4_k_m": "Q4_K", "q6_k": "Q6_K"}

_CENTROIDS = "masked_embd_centroids.weight"
_ORDERING = "masked_embd_ordering"
_EXTRA_TENSORS = (_CENTROIDS, _ORDERING)

_BLK_RE = re.compile(r"^blk\.([+-]?\d+)\.")


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------

def _check_args(outtype: str, file_kind: str) -> None:
    if outtype not in OUTTYPES:
        raise ValueError(f"unknown outtype {outtype!r}; expected one of {OUTTYPES}")
    if file_kind not in FILE_KINDS:
        raise ValueError(f"unknown file_kind {file_kind!r}; expected one of {FILE_KINDS}")


def _ggml_n_dims(ne: Sequence[int]) -> int:
    """ggml_n_dims: number of dimensions ignoring trailing size-1 dims (at least 1)."""
    for i in range(len(ne) - 1, 0, -1):
        if ne[i] > 1:
            return i + 1
    return 1


def _blk_index(name: str) -> int | None:
    m = _BLK_RE.match(name)
    return int(m.group(1)) if m else None


def quant_source_type(outtype: str) -> str | None:
    """Type the llama-quantize path reads from: "F16" for q4_0/q4_k_m/q6_k, else None.

    llama-quantize starts from the F16 file written by the converter, so every
    weight it requantizes was first rounded to F16; our converter must do the
    same to produce identical bytes.
    """
    if outtype not in OUTTYPES:
        raise ValueError(f"unknown outtype {outtype!r}")
    return "F16" if outtype in _QUANTIZE_OUTTYPES else None


def file_type_for(outtype: str, file_kind: str) -> int:
    """``general.file_type`` to write for this outtype and file kind.

    Model files (text/assistant) use :data:`FILE_TYPE` directly (llama-quantize
    overwrites the key with the requested ftype).  The mmproj file follows the
    q8_0 converter rules for q4_0/q4_k_m/q6_k, so it says MOSTLY_Q8_0 (7).
    """
    _check_args(outtype, file_kind)
    if file_kind == "mmproj" and outtype in _QUANTIZE_OUTTYPES:
        return FILE_TYPE["q8_0"]
    return FILE_TYPE[outtype]


def llama_quantize_order(names: Iterable[str]) -> list[str]:
    """Order in which llama-quantize visits (and writes) tensors.

    ``llama_model_loader::weight_name_comparer``: by the layer number parsed
    from a ``blk.N.`` prefix (-1 when absent, so global tensors come first),
    then by name (byte-wise).
    """
    def key(n: str):
        b = _blk_index(n)
        return (-1 if b is None else b, n.encode("utf-8"))
    return sorted(names, key=key)


# ---------------------------------------------------------------------------------------------
# convert_hf_to_gguf.py (conversion/base.py: ModelBase.prepare_tensors)
# ---------------------------------------------------------------------------------------------

def _converter_forced_f32_name(name: str, file_kind: str) -> bool:
    """The per-arch "always F32" list of prepare_tensors, restricted to names that exist in
    MODEL_TENSORS[arch] for our three architectures (gemma4, gemma4-assistant, clip)."""
    if file_kind == "mmproj":
        # V_ENC_EMBD_POS / A_ENC_EMBD_POS
        return name in ("v.position_embd.weight", "a.position_embd.weight")
    if file_kind == "text":
        # FFN_GATE_INP (MoE router; not present in unified models)
        b = _blk_index(name)
        return b is not None and name == f"blk.{b}.ffn_gate_inp.weight"
    return False  # gemma4-assistant: none of the listed tensors belong to the arch


def converter_tensor_type(name: str, ne: Sequence[int], outtype: str, file_kind: str) -> str:
    """Type convert_hf_to_gguf.py writes for one tensor (outtype in f32/f16/bf16/q8_0)."""
    if outtype not in _CONVERTER_OUTTYPES:
        raise ValueError(f"converter outtype must be one of {_CONVERTER_OUTTYPES}, got {outtype!r}")
    n_dims = len(ne)

    # 1. tensor_force_quant (MmprojModel: patch embedding kept in float)
    forced: str | None = None
    if file_kind == "mmproj" and (".patch_embd.weight" in name or ".patch_merger.weight" in name):
        forced = "F16" if outtype == "f16" else "F32"

    # 2. 1-D tensors and norms are always F32
    if n_dims <= 1 or name.endswith("_norm.weight"):
        return "F32"

    # 3. per-arch F32 list, and anything that is not a weight
    if forced is None and (
        _converter_forced_f32_name(name, file_kind)
        or name[-7:] not in (".weight", ".lora_a", ".lora_b")
    ):
        return "F32"

    qtype = forced if forced is not None else _CONVERTER_TYPE[outtype]

    # 5. gguf.quants raises QuantError when the row does not split into blocks -> F16
    if ne[0] % BLOCK_SIZE[qtype] != 0:
        qtype = "F16"
    return qtype


# ---------------------------------------------------------------------------------------------
# llama-quantize (src/llama-quant.cpp)
# ---------------------------------------------------------------------------------------------

_NOT_QUANTIZED_SUBSTRINGS = (
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
    "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight",
    "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight",
    "time_mix_g1.weight", "time_mix_g2.weight",
    "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
    ".patch_embd", ".patch_merger",
    "a.rvq.codebook", "mm.a.code_embd",
)


def _allows_quantization(name: str, ne: Sequence[int]) -> bool:
    """tensor_allows_quantization (default params: quantize_output_tensor=true, !only_copy)."""
    if _ggml_n_dims(ne) < 2:
        return False
    if not name.endswith("weight"):
        return False
    if any(s in name for s in _NOT_QUANTIZED_SUBSTRINGS):
        return False
    # LLM_TN(arch)(POS_EMBD / TOKEN_TYPES, "weight")
    if name in ("position_embd.weight", "token_types.weight"):
        return False
    return True


# tensor_get_category
def _category(name: str) -> str:
    if name == "output.weight":
        return "OUTPUT"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "TOKEN_EMBD"
    for sub, cat in (
        ("attn_qkv.weight", "ATTENTION_QKV"),
        ("attn_kv_b.weight", "ATTENTION_KV_B"),
        ("attn_v.weight", "ATTENTION_V"),
        ("attn_k.weight", "ATTENTION_K"),
        ("attn_q.weight", "ATTENTION_Q"),
        ("attn_output.weight", "ATTENTION_OUTPUT"),
        ("ffn_up", "FFN_UP"),
        ("ffn_gate", "FFN_GATE"),
        ("ffn_down", "FFN_DOWN"),
    ):
        if sub in name:
            return cat
    return "OTHER"


def _is_attn_v_like(cat: str) -> bool:
    return cat in ("ATTENTION_V", "ATTENTION_QKV", "ATTENTION_KV_B")


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncation toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _cmod(a: int, b: int) -> int:
    return a - b * _cdiv(a, b)


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    return (i_layer < _cdiv(n_layers, 8)
            or i_layer >= _cdiv(7 * n_layers, 8)
            or _cmod(i_layer - _cdiv(n_layers, 8), 3) == 2)


def _fallback(ne: Sequence[int], target: str) -> str:
    """tensor_type_fallback: row length not a multiple of the block size."""
    ncols = ne[0]
    if ncols % BLOCK_SIZE[target] == 0:
        return target
    table = {
        "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL",
        "IQ2_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ4_XS": "IQ4_NL",
        "Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0",
        "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
    }
    if target in table:
        ret = table[target]
    elif BLOCK_SIZE[target] <= 32:
        ret = target
    else:  # pragma: no cover - not reachable for the types we pick
        raise ValueError(f"no tensor type fallback is defined for type {target}")
    if ncols % BLOCK_SIZE[ret] != 0:
        ret = "F16"
    return ret


class _QuantState:
    """quantize_state_impl, restricted to what our three ftypes use."""

    def __init__(self, names: Sequence[str], n_layer: int):
        cats = [_category(n) for n in names]
        self.n_attention_wv = sum(1 for c in cats if _is_attn_v_like(c))
        self.has_tied_embeddings = not any(c == "OUTPUT" for c in cats)
        self.n_ffn_down = n_layer
        self.i_attention_wv = 0
        self.i_ffn_down = 0


def _quant_type_impl(qs: _QuantState, new_type: str, name: str, ne: Sequence[int],
                     outtype: str, cat: str) -> str:
    """llama_tensor_get_type_impl for ftype in {Q4_0, Q4_K_M, Q6_K}, dense model,
    no imatrix, no user overrides."""
    if cat == "OUTPUT" or (qs.has_tied_embeddings and cat == "TOKEN_EMBD"):
        if ne[0] % BLOCK_SIZE[new_type] != 0:
            return "Q8_0"
        if new_type != "Q8_0":
            return "Q6_K"
        return new_type
    if cat == "TOKEN_EMBD":
        return new_type  # untied token_embd: only IQ*/TQ*/Q2_0 ftypes change it
    if _is_attn_v_like(cat):
        if outtype == "q4_k_m" and _use_more_bits(qs.i_attention_wv, qs.n_attention_wv):
            new_type = "Q6_K"
        qs.i_attention_wv += 1
        return new_type
    if cat == "FFN_DOWN":
        if outtype == "q4_k_m" and _use_more_bits(qs.i_ffn_down, qs.n_ffn_down):
            new_type = "Q6_K"
        qs.i_ffn_down += 1
        return new_type
    return new_type


def _llama_quantize_types(tensors: Sequence[tuple[str, Sequence[int]]], outtype: str,
                          file_kind: str, n_layer: int | None) -> dict[str, str]:
    src = {name: converter_tensor_type(name, ne, "f16", file_kind) for name, ne in tensors}
    shapes = {name: tuple(ne) for name, ne in tensors}
    order = llama_quantize_order(shapes)
    if n_layer is None:
        blks = [b for b in (_blk_index(n) for n in shapes) if b is not None]
        n_layer = max(blks) + 1 if blks else 0
    qs = _QuantState(order, n_layer)
    default_type = _QUANT_DEFAULT_TYPE[outtype]
    out: dict[str, str] = {}
    for name in order:
        ne = shapes[name]
        if not _allows_quantization(name, ne):
            out[name] = src[name]
            continue
        new_type = _quant_type_impl(qs, default_type, name, ne, outtype, _category(name))
        out[name] = _fallback(ne, new_type)
    return out


# ---------------------------------------------------------------------------------------------
# public entry point
# ---------------------------------------------------------------------------------------------

def _extra_tensor_type(name: str, ne: Sequence[int], outtype: str) -> str:
    if name == _ORDERING:
        return "I32"
    # centroids
    if len(ne) <= 1:
        return "F32"
    if outtype in ("f32", "f16", "bf16"):
        return _CONVERTER_TYPE[outtype]
    # q8_0 and the llama-quantize outtypes: token_embd would be Q8_0 / Q6_K, never below Q8_0
    return "Q8_0" if ne[0] % 32 == 0 else "F16"


def choose_tensor_types(tensors: list[tuple[str, tuple[int, ...]]], outtype: str, file_kind: str,
                        *, n_layer: int | None = None) -> dict[str, str]:
    """Pick the ggml type of every tensor of one output file.

    ``tensors``: (gguf_name, ne) for every tensor of the file, ``ne`` in GGUF
    order (fastest-varying first).  ``outtype``: one of :data:`OUTTYPES`.
    ``file_kind``: "text" (arch gemma4), "mmproj" (arch clip) or "assistant"
    (arch gemma4-assistant).  ``n_layer``: the file's ``block_count`` (used by
    Q4_K_M's ffn_down rule); by default one more than the highest ``blk.N``.

    Returns {gguf_name: upper-case ggml type name}.  See the module docstring
    for the rules, including the mmproj choice for q4_0/q4_k_m/q6_k (q8_0
    converter rules) and our extra masked_embd_* drafter tensors.
    """
    _check_args(outtype, file_kind)
    names = [n for n, _ in tensors]
    if len(set(names)) != len(names):
        raise ValueError("duplicate tensor names")

    extra = [(n, tuple(ne)) for n, ne in tensors if n in _EXTRA_TENSORS]
    regular = [(n, tuple(ne)) for n, ne in tensors if n not in _EXTRA_TENSORS]

    if file_kind == "mmproj":
        conv_outtype = outtype if outtype in _CONVERTER_OUTTYPES else "q8_0"
        types = {n: converter_tensor_type(n, ne, conv_outtype, file_kind) for n, ne in regular}
    elif outtype in _CONVERTER_OUTTYPES:
        types = {n: converter_tensor_type(n, ne, outtype, file_kind) for n, ne in regular}
    else:
        types = _llama_quantize_types(regular, outtype, file_kind, n_layer)

    for n, ne in extra:
        types[n] = _extra_tensor_type(n, ne, outtype)

    return {n: types[n] for n in names}
