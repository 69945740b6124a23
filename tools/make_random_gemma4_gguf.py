"""Write a Gemma 4 text GGUF with the real 12B dimensions (or others) and random weights,
straight to disk one tensor at a time (never the whole model in memory), for benchmarks.

    python tools/make_random_gemma4_gguf.py --template tiny.gguf --layers 6 --type q4_0 -o g4-12b-6l-q4_0.gguf

--template: any gemma4 GGUF with the 262144-token Gemma 4 tokenizer (e.g. a tiny fixture
converted by `unigemma convert`): its tokenizer.* keys are copied, so llama.cpp loads the
result too. Matrices get `--type` (q4_0, q4_k, q8_0, f16), the tied embedding / head Q6_K
(what llama-quantize gives a tied head for 4-bit types; Q8_0 for --type q8_0), norms F32 in
[0.5, 1.5), layer scalars 1. Blocks are random valid data (bench_kernels.make_weights).
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
    ap.add_argument("--type", default="q4_0", choices=["q4_0", "q4_k", "q8_0", "f16"])
    ap.add_argument("--hidden", type=int, default=3840)
    ap.add_argument("--ffn", type=int, default=15360)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=256)
    ap.add_argument("--global-head-dim", type=int, default=512)
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    from unigemma import _core as core

    tpl = gguf.GGUFReader(a.template)
    if tpl.fields["general.architecture"].contents() != "gemma4":
        raise SystemExit("--template must be a gemma4 GGUF")
    n_vocab = len(tpl.fields["tokenizer.ggml.tokens"].data)
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
    w.add_file_type({"q4_0": 2, "q4_k": 15, "q8_0": 7, "f16": 1}[a.type])
    copy_tokenizer_keys(w, tpl)

    mat_t = {"q4_0": "q4_0", "q4_k": "q4_k", "q8_0": "q8_0", "f16": "f16"}[a.type]
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

    write_tensors(w, tensors, rng, core, a.global_head_dim)
    os.replace(tmp, out)
    print(f"wrote {out} ({out.stat().st_size / 2**30:.2f} GiB)", file=sys.stderr)
    return 0


def copy_tokenizer_keys(w: gguf.GGUFWriter, tpl: gguf.GGUFReader) -> None:
    """The template's tokenizer.* keys, so llama.cpp loads the written file too."""
    for k, f in tpl.fields.items():
        if not k.startswith("tokenizer."):
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            w.add_array(k, f.contents())
        else:
            w.add_key_value(k, f.contents(), t)


def write_tensors(w: gguf.GGUFWriter, tensors, rng, core, global_head_dim: int) -> None:
    """Header, keys and tensors, one tensor at a time (never the whole model in memory), then
    close. tensors: (name, rows, cols, type); rows 0 = 1-D of cols: "f32" (values in [0.5,
    1.5)), "one" (1.0), "rope" (proportional RoPE freqs of a 0.25 partial rotary factor),
    "i32perm" (a random permutation of 0..cols-1); else a matrix of random valid blocks."""
    from unigemma.bench_kernels import make_weights

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
            data = make_weights(core, t, rows, cols, seed=int(rng.integers(1 << 31)))
        w.write_tensor_data(data)
        print(f"  {name:32} {t:7} {rows}x{cols}", file=sys.stderr)
    w.close()


if __name__ == "__main__":
    raise SystemExit(main())
