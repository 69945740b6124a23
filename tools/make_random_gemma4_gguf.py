"""Write a Gemma 4 text GGUF with the real 12B dimensions (or others) and random weights,
straight to disk one tensor at a time (never the whole model in memory), for benchmarks.

    python tools/make_random_gemma4_gguf.py --template tiny.gguf --layers 6 --type q4_0 -o g4-12b-6l-q4_0.gguf

--template: any gemma4 GGUF with the 262144-token Gemma 4 tokenizer (e.g. a tiny fixture
converted by `unigemma convert`, such as the test fixture `default` converted to f32): its
tokenizer.* keys are copied, so llama.cpp loads the result too. Matrices get `--type` (q4_0,
q4_k, q8_0, f16), the tied embedding / head Q6_K (what llama-quantize gives a tied head for
4-bit types; Q8_0 for --type q8_0), norms F32 in [0.5, 1.5), layer scalars 1. `--type q4_k_m`
is llama-quantize's Q4_K_M mix (unigemma.convert.quant_policy.choose_tensor_types): Q4_K
matrices, Q6_K for attn_v / ffn_down on the layers its "more bits" rule picks and for the
tied head. Blocks are random valid data (bench_kernels.make_weights), generated and written
in chunks of at most CHUNK_BYTES, so the writer's memory stays bounded (~0.2 GB for the 12B
shape, whatever --layers) however large the file.
Defaults: hidden 3840, FFN 15360, 16 heads, 8 KV heads, head_dim 256 (sliding) / 512 (full),
window 1024, 5 sliding : 1 full, partial rotary 0.25 on full layers, softcap 30.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import gguf
import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--template", required=True)
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--type", default="q4_0", choices=["q4_0", "q4_k", "q4_k_m", "q8_0", "f16"])
    ap.add_argument("--hidden", type=int, default=3840)
    ap.add_argument("--ffn", type=int, default=15360)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=256)
    ap.add_argument("--global-head-dim", type=int, default=512)
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.layers < 1:
        ap.error("--layers must be >= 1")

    from unigemma import _core as core
    from unigemma import open_gguf

    # unigemma's reader, not gguf.GGUFReader: that one builds ~0.7 GB of Python objects for the
    # 262144-token vocabulary alone
    tpl = open_gguf(a.template)
    if tpl.get("general.architecture") != "gemma4":
        raise SystemExit("--template must be a gemma4 GGUF")
    n_vocab = len(tpl.get("tokenizer.ggml.tokens"))
    L, H = a.layers, a.hidden
    sliding = [not (i % 6 == 5 or i == L - 1) for i in range(L)]
    out = Path(a.out)
    tmp = out.with_name(out.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), "gemma4")
    w.add_name(f"random gemma4 {L}-layer {H}-hidden {a.type}")
    w.add_block_count(L)
    w.add_context_length(262144)
    w.add_embedding_length(H)
    w.add_feed_forward_length(a.ffn)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_key_length(a.global_head_dim)
    w.add_value_length(a.global_head_dim)
    w.add_uint32("gemma4.attention.key_length_swa", a.head_dim)
    w.add_uint32("gemma4.attention.value_length_swa", a.head_dim)
    w.add_rope_dimension_count(a.global_head_dim)
    w.add_uint32("gemma4.rope.dimension_count_swa", a.head_dim)
    w.add_rope_freq_base(1e6)
    w.add_float32("gemma4.rope.freq_base_swa", 1e4)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_sliding_window(a.window)
    w.add_array("gemma4.attention.sliding_window_pattern", sliding)
    w.add_uint32("gemma4.attention.shared_kv_layers", 0)
    w.add_uint32("gemma4.embedding_length_per_layer_input", 0)
    w.add_final_logit_softcapping(30.0)
    w.add_file_type({"q4_0": 2, "q4_k": 15, "q4_k_m": 15, "q8_0": 7, "f16": 1}[a.type])
    copy_tokenizer_keys(w, tpl)

    mat_t = {"q4_0": "q4_0", "q4_k": "q4_k", "q4_k_m": "q4_k", "q8_0": "q8_0", "f16": "f16"}[a.type]
    emb_t = "q8_0" if a.type in ("q8_0",) else ("f16" if a.type == "f16" else "q6_k")
    rng = np.random.default_rng(a.seed)
    tensors = []  # (name, rows, cols, type) ; rows = 0 -> 1-D F32 of cols

    def mat(name, rows, cols, t=mat_t):
        tensors.append((name, rows, cols, t))

    def vec(name, n):
        tensors.append((name, 0, n, "f32"))

    mat("token_embd.weight", n_vocab, H, emb_t)
    vec("output_norm.weight", H)
    tensors.append(("rope_freqs.weight", 0, a.global_head_dim // 2, "rope"))
    for i in range(L):
        hd = a.head_dim if sliding[i] else a.global_head_dim
        p = f"blk.{i}."
        vec(p + "attn_norm.weight", H)
        mat(p + "attn_q.weight", a.heads * hd, H)
        mat(p + "attn_k.weight", a.kv_heads * hd, H)
        mat(p + "attn_v.weight", a.kv_heads * hd, H)
        vec(p + "attn_q_norm.weight", hd)
        vec(p + "attn_k_norm.weight", hd)
        mat(p + "attn_output.weight", H, a.heads * hd)
        vec(p + "post_attention_norm.weight", H)
        vec(p + "ffn_norm.weight", H)
        mat(p + "ffn_gate.weight", a.ffn, H)
        mat(p + "ffn_up.weight", a.ffn, H)
        mat(p + "ffn_down.weight", H, a.ffn)
        vec(p + "post_ffw_norm.weight", H)
        tensors.append((p + "layer_output_scale.weight", 0, 1, "one"))

    if a.type == "q4_k_m":
        tensors = q4_k_m_types(tensors, L)
    write_tensors(w, tensors, rng, core, a.global_head_dim)
    os.replace(tmp, out)
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"wrote {out} ({out.stat().st_size / 2**30:.2f} GiB; writer peak RSS {peak / 2**20:.0f} MiB)",
          file=sys.stderr)
    return 0


def q4_k_m_types(tensors, n_layer: int):
    """The matrices' types of llama-quantize's Q4_K_M mix, from the converter's policy
    (which re-implements llama.cpp's rule): 1-D tensors keep theirs."""
    from unigemma.convert.quant_policy import choose_tensor_types

    shapes = [(name, (cols,) if rows == 0 else (cols, rows)) for name, rows, cols, _ in tensors]
    types = choose_tensor_types(shapes, "q4_k_m", "text", n_layer=n_layer)
    return [(name, rows, cols, t if rows == 0 else types[name].lower()) for name, rows, cols, t in tensors]


def copy_tokenizer_keys(w: gguf.GGUFWriter, tpl) -> None:
    """The template's tokenizer.* keys, so llama.cpp loads the written file too. tpl: a
    unigemma GGUF file (open_gguf) or a gguf.GGUFReader."""
    if not hasattr(tpl, "fields"):
        vt = gguf.GGUFValueType
        for k in tpl.keys():
            if not k.startswith("tokenizer."):
                continue
            t, v = tpl.value_type(k), tpl.get(k)
            if t.startswith("ARRAY["):
                items = v.tolist() if hasattr(v, "tolist") else list(v)
                w.add_key_value(k, items, vt.ARRAY, sub_type=vt[t[6:-1]])
            else:
                w.add_key_value(k, v, vt[t])
        return
    for k, f in tpl.fields.items():
        if not k.startswith("tokenizer."):
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            w.add_array(k, f.contents())
        else:
            w.add_key_value(k, f.contents(), t)


CHUNK_BYTES = 64 << 20  # random blocks generated and written at most this much at a time


class _RandomMatrix:
    """Random valid blocks of a rows x cols matrix, written in row chunks: what GGUFWriter.
    write_tensor_data needs of an array (nbytes, tofile) without holding the whole tensor."""

    def __init__(self, core, t: str, rows: int, cols: int, seed: int):
        be, bb = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[t.upper()]]
        self.core, self.t, self.rows, self.cols, self.seed = core, t, rows, cols, seed
        self.row_bytes = cols // be * bb
        self.nbytes = rows * self.row_bytes

    def tofile(self, fout) -> None:
        from unigemma.bench_kernels import make_weights

        step = max(1, CHUNK_BYTES // self.row_bytes)
        for i, r0 in enumerate(range(0, self.rows, step)):
            n = min(step, self.rows - r0)
            # chunk 0 uses the tensor's seed: a tensor of one chunk is what it was before chunking
            make_weights(self.core, self.t, n, self.cols, seed=self.seed + i).tofile(fout)


def write_tensors(w: gguf.GGUFWriter, tensors, rng, core, global_head_dim: int) -> None:
    """Header, keys and tensors, one tensor at a time (never the whole model in memory), then
    close. tensors: (name, rows, cols, type); rows 0 = 1-D of cols: "f32" (values in [0.5,
    1.5)), "one" (1.0), "rope" (proportional RoPE freqs of a 0.25 partial rotary factor),
    "i32perm" (a random permutation of 0..cols-1); else a matrix of random valid blocks."""
    qt = gguf.GGMLQuantizationType
    for name, rows, cols, t in tensors:
        if rows == 0 and t == "i32perm":
            w.add_tensor_info(name, [cols], np.dtype(np.int32), cols * 4)
        elif rows == 0:
            w.add_tensor_info(name, [cols], np.dtype(np.float32), cols * 4)
        else:
            ttype = qt[t.upper()]
            be, bb = gguf.GGML_QUANT_SIZES[ttype]
            w.add_tensor_info(name, [rows, cols // be * bb], np.dtype(np.uint8), rows * cols // be * bb, raw_dtype=ttype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, rows, cols, t in tensors:
        if t == "f32":
            data = rng.uniform(0.5, 1.5, cols).astype(np.float32)
        elif t == "one":
            data = np.ones(1, np.float32)
        elif t == "rope":
            rot = int(0.25 * global_head_dim // 2)
            data = np.array([1.0] * rot + [1e30] * (cols - rot), np.float32)
        elif t == "i32perm":
            data = rng.permutation(cols).astype(np.int32)
        else:
            data = _RandomMatrix(core, t, rows, cols, seed=int(rng.integers(1 << 31)))
        w.write_tensor_data(data)
        print(f"  {name:32} {t:7} {rows}x{cols}", file=sys.stderr)
    w.close()


if __name__ == "__main__":
    raise SystemExit(main())
