"""Write a Gemma 4 MTP drafter GGUF (arch gemma4-assistant) with random weights and the shape
of the real 12B assistant (or others), straight to disk one tensor at a time, for benchmarks;
optionally its centroid side file (ordered-embedding head, our converter's layout).

    python tools/make_random_assistant_gguf.py --template tiny.gguf --type q4_0 -o a12b-q4_0.gguf \\
        --centroids a12b-q4_0-centroids.gguf

--template: any GGUF with the 262144-token Gemma 4 tokenizer (a tiny fixture converted by
`unigemma convert`): its tokenizer.* keys are copied. Matrices get `--type` (q4_0, q4_k, q8_0,
f16), the tied head --head-type (default Q6_K, what llama-quantize gives a tied head; Q8_0 for
--type q8_0), norms F32 in [0.5, 1.5), layer scalars 1; blocks are random valid data
(bench_kernels.make_weights). Defaults: 4 layers [sliding x 3, full], hidden 1024, FFN 8192,
target hidden 3840, 16 heads reading 8 KV heads, head_dim 256 / 512 (the 12B target's
layout), window 1024, partial rotary 0.25. The centroid file: --num-centroids (2048) rows of
Q8_0 (the converter's rule), top-k --top-k (32), a random token permutation.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import gguf
import numpy as np

# the streaming writer and the tokenizer keys, shared with the target tool (tools/ is on
# sys.path when this runs as `python tools/make_random_assistant_gguf.py`)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_random_gemma4_gguf import copy_tokenizer_keys, write_tensors  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--template", required=True)
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--centroids", help="also write the centroid side file here")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--type", default="q4_0", choices=["q4_0", "q4_k", "q8_0", "f16"])
    ap.add_argument("--head-type", default=None, choices=["q6_k", "q8_0", "f16"])
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--target-hidden", type=int, default=3840)
    ap.add_argument("--ffn", type=int, default=8192)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=256)
    ap.add_argument("--global-head-dim", type=int, default=512)
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--num-centroids", type=int, default=2048)
    ap.add_argument("--top-k", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    from unigemma import _core as core

    tpl = gguf.GGUFReader(a.template)
    n_vocab = len(tpl.fields["tokenizer.ggml.tokens"].data)
    L, H, Ht = a.layers, a.hidden, a.target_hidden
    sliding = [i != L - 1 for i in range(L)]
    arch = "gemma4-assistant"
    out = Path(a.out)
    tmp = out.with_name(out.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), arch)
    w.add_name(f"random gemma4-assistant {L}-layer {H}-hidden {a.type}")
    w.add_block_count(L)
    w.add_context_length(262144)
    w.add_embedding_length(H)
    w.add_uint32(f"{arch}.embedding_length_out", Ht)
    w.add_uint32(f"{arch}.nextn_predict_layers", L)
    w.add_feed_forward_length(a.ffn)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_key_length(a.global_head_dim)
    w.add_value_length(a.global_head_dim)
    w.add_uint32(f"{arch}.attention.key_length_swa", a.head_dim)
    w.add_uint32(f"{arch}.attention.value_length_swa", a.head_dim)
    w.add_rope_dimension_count(a.global_head_dim)
    w.add_uint32(f"{arch}.rope.dimension_count_swa", a.head_dim)
    w.add_rope_freq_base(1e6)
    w.add_float32(f"{arch}.rope.freq_base_swa", 1e4)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_sliding_window(a.window)
    w.add_array(f"{arch}.attention.sliding_window_pattern", sliding)
    w.add_uint32(f"{arch}.attention.shared_kv_layers", L)
    w.add_file_type({"q4_0": 2, "q4_k": 15, "q8_0": 7, "f16": 1}[a.type])
    if a.centroids:
        w.add_uint32("unigemma.assistant.num_centroids", a.num_centroids)
        w.add_uint32("unigemma.assistant.centroid_top_k", a.top_k)
    copy_tokenizer_keys(w, tpl)

    mat_t = a.type
    emb_t = a.head_type or ("q8_0" if a.type == "q8_0" else ("f16" if a.type == "f16" else "q6_k"))
    rng = np.random.default_rng(a.seed)
    tensors = [("token_embd.weight", n_vocab, H, emb_t), ("output_norm.weight", 0, H, "f32"),
               ("rope_freqs.weight", 0, a.global_head_dim // 2, "rope"),
               ("nextn.pre_projection.weight", H, 2 * Ht, mat_t), ("nextn.post_projection.weight", Ht, H, mat_t)]
    for i in range(L):
        hd = a.head_dim if sliding[i] else a.global_head_dim
        p = f"blk.{i}."
        tensors += [(p + "attn_norm.weight", 0, H, "f32"), (p + "attn_q.weight", a.heads * hd, H, mat_t),
                    (p + "attn_q_norm.weight", 0, hd, "f32"), (p + "attn_output.weight", H, a.heads * hd, mat_t),
                    (p + "post_attention_norm.weight", 0, H, "f32"), (p + "ffn_norm.weight", 0, H, "f32"),
                    (p + "ffn_gate.weight", a.ffn, H, mat_t), (p + "ffn_up.weight", a.ffn, H, mat_t),
                    (p + "ffn_down.weight", H, a.ffn, mat_t), (p + "post_ffw_norm.weight", 0, H, "f32"),
                    (p + "layer_output_scale.weight", 0, 1, "one")]
    write_tensors(w, tensors, rng, core, a.global_head_dim)
    os.replace(tmp, out)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)

    if a.centroids:
        c = "gemma4-assistant-centroids"
        cout = Path(a.centroids)
        ctmp = cout.with_name(cout.name + ".tmp")
        cw = gguf.GGUFWriter(str(ctmp), c)
        cw.add_name(f"random gemma4-assistant centroids {a.num_centroids}")
        cw.add_uint32(f"{c}.embedding_length", H)
        cw.add_uint32(f"{c}.vocab_size", n_vocab)
        cw.add_uint32(f"{c}.num_centroids", a.num_centroids)
        cw.add_uint32(f"{c}.top_k", a.top_k)
        write_tensors(cw, [("masked_embd_centroids.weight", a.num_centroids, H, "q8_0"),
                    ("masked_embd_ordering", 0, n_vocab, "i32perm")], rng, core, a.global_head_dim)
        os.replace(ctmp, cout)
        print(f"wrote {cout} ({cout.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
