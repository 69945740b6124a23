"""Write a Gemma 4 Unified projector (mmproj: vision gemma4uv + audio gemma4ua) with the real
12B dimensions and random weights, for benchmarks next to llama.cpp's mtmd.

    python tools/make_random_mmproj_gguf.py -o g4-12b-mmproj-f16.gguf [--type f16|f32] [--hidden 3840]

Layout as llama.cpp's converter writes it (reference §3): v.patch_embd [6912, D_v] in --type,
norms / biases / position table F32, mm.input_projection [D_v, H] and mm.a.input_projection
[640, H] in --type. Values: LayerNorm weights near 1, biases small, matrices ~N(0, 1/fan_in),
so activations stay in a realistic range. Written to a temp file, then renamed.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import gguf
import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--type", default="f16", choices=["f16", "f32"])
    ap.add_argument("--hidden", type=int, default=3840, help="text hidden size H")
    ap.add_argument("--vision-dim", type=int, default=3840, help="D_v (mm_embed_dim)")
    ap.add_argument("--posemb", type=int, default=1120)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    from unigemma.convert.metadata import write_mmproj_metadata

    rng = np.random.default_rng(a.seed)
    H, D, P, K = a.hidden, a.vision_dim, a.posemb, 48 * 48 * 3
    mat_t = np.float16 if a.type == "f16" else np.float32
    out = Path(a.out)
    tmp = out.with_name(out.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), "clip")
    config = {"vision_config": {"patch_size": 16, "pooling_kernel_size": 3, "mm_embed_dim": D,
                                "mm_posemb_size": P, "output_proj_dims": D, "rms_norm_eps": 1e-6},
              "audio_config": {"audio_embed_dim": 640, "rms_norm_eps": 1e-6}}
    file_type = gguf.LlamaFileType.MOSTLY_F16 if a.type == "f16" else gguf.LlamaFileType.ALL_F32
    write_mmproj_metadata(w, f"random gemma4 mmproj {D}->{H} {a.type}", file_type, config, H, {})

    def near1(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    def small(n):
        return (0.02 * rng.standard_normal(n)).astype(np.float32)

    def mat(rows, cols):  # PyTorch [rows=out, cols=in] -> numpy (rows, cols) = GGUF ne [cols, rows]
        return (rng.standard_normal((rows, cols), dtype=np.float32) / np.sqrt(cols)).astype(mat_t)

    w.add_tensor("v.patch_norm.1.weight", near1(K))
    w.add_tensor("v.patch_norm.1.bias", small(K))
    w.add_tensor("v.patch_embd.weight", mat(D, K))
    w.add_tensor("v.patch_embd.bias", small(D))
    w.add_tensor("v.patch_norm.2.weight", near1(D))
    w.add_tensor("v.patch_norm.2.bias", small(D))
    w.add_tensor("v.position_embd.weight", (0.02 * rng.standard_normal((2, P, D))).astype(np.float32))
    w.add_tensor("v.patch_norm.3.weight", near1(D))
    w.add_tensor("v.patch_norm.3.bias", small(D))
    w.add_tensor("mm.input_projection.weight", mat(H, D))
    w.add_tensor("mm.a.input_projection.weight", mat(H, 640))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, out)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
