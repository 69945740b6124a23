#!/usr/bin/env python3
"""Check unigemma.convert.quant_policy against files produced by llama.cpp itself.

Sub-commands
------------

``check PATH...``
    PATH is a GGUF file, a ``*.dryrun.log`` (stderr+stdout of ``llama-quantize --dry-run``)
    or a directory holding such files.  For every GGUF the file kind comes from
    ``general.architecture`` (gemma4 -> text, clip -> mmproj, gemma4-assistant ->
    assistant) and the outtype from ``general.file_type``; for a dry-run log both come
    from the log (the loader's metadata dump and the "quantizing ... as TYPE" line).
    Every tensor's type is compared with ``choose_tensor_types``; for llama-quantize
    outputs the tensor order is compared with ``llama_quantize_order`` and
    ``general.file_type`` with ``FILE_TYPE``.  Exit status 1 on any mismatch.

``make-refs --llama-cpp ROOT --quantize BIN --out DIR CKPT...``
    Converts each HF checkpoint directory with llama.cpp's ``convert_hf_to_gguf.py``
    (outtypes f32/f16/bf16/q8_0; also ``--mmproj`` for unified targets) and runs
    ``llama-quantize`` on the F16 model file to Q4_0 / Q4_K_M / Q6_K.
    Files are named ``<ckpt>.<kind>.<outtype>.gguf``.

``make-12b OUT.gguf [--layers N] [--k-eq-v] [--quantize BIN]``
    Writes a *sparse* F16 GGUF (arch gemma4) with the real Gemma 4 12B dims (hidden 3840,
    FFN 15360, vocab 262144, 16 heads, 8 KV heads, head_dim 256 / 512 on every 6th layer)
    and N layers.  All data are zeros and occupy no disk space.  With ``--quantize`` it also
    runs ``llama-quantize --dry-run`` for Q4_0 / Q4_K_M / Q6_K next to OUT, writing
    ``OUT-stem.<outtype>.dryrun.log`` files that ``check`` understands.

``check`` reads GGUF headers itself (no dependency).  ``make-12b`` needs the gguf package,
taken from ``--gguf-py`` / $GGUF_PY if given, else the installed one.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def _load_policy():
    """Import quant_policy; fall back to loading the file directly when the unigemma package
    cannot be imported (its __init__ needs the compiled extension)."""
    sys.path.insert(0, str(_REPO / "python"))
    try:
        from unigemma.convert import quant_policy  # noqa: PLC0415
        return quant_policy
    except ImportError:
        import importlib.util  # noqa: PLC0415
        path = _REPO / "python" / "unigemma" / "convert" / "quant_policy.py"
        spec = importlib.util.spec_from_file_location("unigemma_quant_policy", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        return mod


qp = _load_policy()

ARCH_TO_KIND = {"gemma4": "text", "clip": "mmproj", "gemma4-assistant": "assistant"}
FTYPE_TO_OUTTYPE = {v: k for k, v in qp.FILE_TYPE.items()}
QUANT_NAME = {"q4_0": "Q4_0", "q4_k_m": "Q4_K_M", "q6_k": "Q6_K"}
QUANT_NAME_TO_OUTTYPE = {v: k for k, v in QUANT_NAME.items()}
SYNTHETIC_NAME = "synthetic-gemma4-12b-shape"


def _import_gguf(path: str | None):
    path = path or os.environ.get("GGUF_PY")
    if path:
        sys.path.insert(0, path)
    import gguf  # noqa: PLC0415
    return gguf


# ---------------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------------

# ggml type ids -> names (ggml.h enum ggml_type), for the types a GGUF here can hold
_GGML_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
               10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
               16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
               22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
               29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4"}
# GGUF metadata value types -> struct format (None: string / array)
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                 10: "<Q", 11: "<q", 12: "<d"}


def _read_gguf(path: Path):
    """Minimal little-endian GGUF v2/v3 header reader: (arch, file_type, block_count, tensors).

    Much faster than gguf.GGUFReader on files with a 262144-entry vocabulary, because array
    values are skipped without being decoded."""
    import struct  # noqa: PLC0415
    with open(path, "rb") as f:
        data = f.read(64 << 20)   # metadata of our files is far below 64 MiB
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("<Q")
        v = data[pos:pos + n].decode("utf-8", errors="replace")
        pos += n
        return v

    def value(t):
        nonlocal pos
        if t in _GGUF_SCALARS:
            return take(_GGUF_SCALARS[t])
        if t == 8:
            return string()
        if t == 9:
            et, n = take("<I"), take("<Q")
            if et in _GGUF_SCALARS:
                pos += struct.calcsize(_GGUF_SCALARS[et]) * n
            else:
                for _ in range(n):
                    value(et)
            return None
        raise ValueError(f"{path}: bad GGUF value type {t}")

    if data[:4] != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    pos = 4
    take("<I")
    n_tensors, n_kv = take("<Q"), take("<Q")
    kv = {}
    for _ in range(n_kv):
        key = string()
        kv[key] = value(take("<I"))
    tensors = []
    for _ in range(n_tensors):
        name = string()
        nd = take("<I")
        ne = tuple(take("<Q") for _ in range(nd))
        t = take("<I")
        take("<Q")
        tensors.append((name, ne, _GGML_TYPES.get(t, f"TYPE{t}")))
    arch = kv.get("general.architecture")
    return arch, kv.get("general.file_type"), kv.get(f"{arch}.block_count"), tensors, kv.get("general.name")


_TYPE_NAME_FIX = {"q4_K": "Q4_K", "q5_K": "Q5_K", "q6_K": "Q6_K", "q2_K": "Q2_K", "q3_K": "Q3_K", "q8_K": "Q8_K"}


def _ggml_name(s: str) -> str:
    return _TYPE_NAME_FIX.get(s, s.upper())


_LOG_TENSOR = re.compile(
    r"\[\s*\d+/\s*\d+\]\s+(\S+)\s+-\s+\[([\d,\s]+)\],\s+type =\s+(\S+),\s+size =\s*[\d.]+ MiB(?: ->\s*[\d.]+ MiB \((\S+)\))?")
_LOG_ARCH = re.compile(r"general\.architecture\s+str\s+=\s+(\S+)")
_LOG_AS = re.compile(r"(?:quantizing '.*?' to '.*?'|calculating quantization size for '.*?') as (\S+)")


def _read_dryrun_log(path: Path):
    text = path.read_text(errors="replace")
    m = _LOG_ARCH.search(text)
    arch = m.group(1) if m else None
    m = _LOG_AS.search(text)
    qname = m.group(1) if m else None
    n_layer = None
    if arch:
        m = re.search(rf"{re.escape(arch)}\.block_count\s+u32\s+=\s+(\d+)", text)
        n_layer = int(m.group(1)) if m else None
    tensors = []
    for m in _LOG_TENSOR.finditer(text):
        name, shape, cur, new = m.groups()
        ne = [int(x) for x in shape.split(",")]
        while len(ne) > 1 and ne[-1] == 1:   # the log pads ne to 4 dims
            ne.pop()
        tensors.append((name, tuple(ne), _ggml_name(new or cur), _ggml_name(cur)))
    return arch, qname, n_layer, tensors


def _compare(label, kind, outtype, n_layer, tensors, *, quantized_order=None, ftype=None):
    """tensors: list of (name, ne, actual_type).  Returns number of problems."""
    problems = 0
    names_ne = [(n, ne) for n, ne, _ in tensors]
    ours = qp.choose_tensor_types(names_ne, outtype, kind, n_layer=n_layer)
    mism = [(n, ne, t, ours[n]) for n, ne, t in tensors if ours[n] != t]
    counts: dict[str, int] = {}
    for _, _, t in tensors:
        counts[t] = counts.get(t, 0) + 1
    if quantized_order is not None and quantized_order != qp.llama_quantize_order(quantized_order):
        print(f"  ORDER MISMATCH in {label}")
        problems += 1
    if ftype is not None and ftype != qp.FILE_TYPE[outtype]:
        print(f"  file_type {ftype} != FILE_TYPE[{outtype}] = {qp.FILE_TYPE[outtype]} in {label}")
        problems += 1
    status = "OK " if not mism else "BAD"
    summary = ", ".join(f"{k}:{v}" for k, v in sorted(counts.items()))
    print(f"{status} {label}: kind={kind} outtype={outtype} n_layer={n_layer} "
          f"{len(tensors)} tensors [{summary}]" + (f" {len(mism)} MISMATCHES" if mism else ""))
    for n, ne, t, o in mism:
        print(f"     {n} ne={list(ne)}: llama.cpp={t} ours={o}")
    return problems + len(mism)


def _check_paths(paths: list[Path]) -> int:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(p.glob("*.gguf")) + sorted(p.glob("*.dryrun.log"))
        else:
            files.append(p)
    problems = 0
    n_checked = 0
    for f in files:
        if f.name.endswith(".dryrun.log"):
            arch, qname, n_layer, tensors = _read_dryrun_log(f)
            if arch not in ARCH_TO_KIND or qname not in QUANT_NAME_TO_OUTTYPE or not tensors:
                print(f"SKIP {f.name}: arch={arch} quant={qname} tensors={len(tensors)}")
                continue
            problems += _compare(f.name, ARCH_TO_KIND[arch], QUANT_NAME_TO_OUTTYPE[qname], n_layer,
                                 [(n, ne, t) for n, ne, t, _ in tensors],
                                 quantized_order=[n for n, *_ in tensors])
        else:
            arch, ftype, n_layer, tensors, gname = _read_gguf(f)
            if gname == SYNTHETIC_NAME and ftype == 1:
                print(f"SKIP {f.name}: synthetic input written by make-12b, not by llama.cpp")
                continue
            if arch not in ARCH_TO_KIND or ftype not in FTYPE_TO_OUTTYPE:
                print(f"SKIP {f.name}: arch={arch} file_type={ftype}")
                continue
            outtype = FTYPE_TO_OUTTYPE[ftype]
            quantized = outtype in QUANT_NAME
            problems += _compare(f.name, ARCH_TO_KIND[arch], outtype, n_layer, tensors,
                                 quantized_order=[n for n, *_ in tensors] if quantized else None,
                                 ftype=ftype)
        n_checked += 1
    print(f"\nchecked {n_checked} file(s): {'ALL MATCH' if problems == 0 else f'{problems} problem(s)'}")
    return 1 if problems or n_checked == 0 else 0


# ---------------------------------------------------------------------------------------------
# make-refs
# ---------------------------------------------------------------------------------------------

def _make_refs(llama_cpp: Path, quantize: Path | None, out: Path, ckpts: list[Path], outtypes: list[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(llama_cpp / "gguf-py"))
    conv = llama_cpp / "convert_hf_to_gguf.py"
    for ck in ckpts:
        cfg = json.loads((ck / "config.json").read_text())
        archs = cfg.get("architectures") or [""]
        is_assistant = "Assistant" in archs[0]
        kinds = ["assistant"] if is_assistant else ["text", "mmproj"]
        for kind in kinds:
            for ot in outtypes:
                dst = out / f"{ck.name}.{kind}.{ot}.gguf"
                if dst.exists():
                    continue
                cmd = [sys.executable, str(conv), str(ck), "--outtype", ot, "--outfile", str(dst)]
                if kind == "mmproj":
                    cmd.insert(3, "--mmproj")
                print("+", " ".join(cmd), flush=True)
                r = subprocess.run(cmd, env=env, capture_output=True, text=True, errors="replace")
                if r.returncode != 0:
                    print(r.stdout[-3000:], r.stderr[-3000:])
                    return 1
            if kind == "mmproj" or quantize is None:
                continue
            f16 = out / f"{ck.name}.{kind}.f16.gguf"
            for ot, qn in QUANT_NAME.items():
                dst = out / f"{ck.name}.{kind}.{ot}.gguf"
                if dst.exists():
                    continue
                cmd = [str(quantize), str(f16), str(dst), qn]
                print("+", " ".join(cmd), flush=True)
                r = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
                (out / f"{ck.name}.{kind}.{ot}.quantize.log").write_text(r.stdout + r.stderr)
                if r.returncode != 0:
                    print(r.stdout[-3000:], r.stderr[-3000:])
                    return 1
    return 0


# ---------------------------------------------------------------------------------------------
# make-12b
# ---------------------------------------------------------------------------------------------

def _make_12b(out: Path, n_layers: int, k_eq_v: bool, vocab: int = 262144) -> None:
    import numpy as np  # noqa: PLC0415
    import gguf  # noqa: PLC0415

    H, FF, NH, NKV, HD_S, HD_F = 3840, 15360, 16, 8, 256, 512
    arch = "gemma4"
    swa = [(i % 6) != 5 for i in range(n_layers)]
    swa[-1] = False
    w = gguf.GGUFWriter(str(out), arch)
    w.add_type("model")
    w.add_name(SYNTHETIC_NAME)
    w.add_file_type(1)
    w.add_quantization_version(2)
    p = f"{arch}."
    w.add_uint32(p + "block_count", n_layers)
    w.add_uint32(p + "context_length", 131072)
    w.add_uint32(p + "embedding_length", H)
    w.add_uint32(p + "feed_forward_length", FF)
    w.add_uint32(p + "attention.head_count", NH)
    w.add_uint32(p + "attention.head_count_kv", NKV)
    w.add_uint32(p + "attention.key_length", HD_F)
    w.add_uint32(p + "attention.value_length", HD_F)
    w.add_uint32(p + "attention.key_length_swa", HD_S)
    w.add_uint32(p + "attention.value_length_swa", HD_S)
    w.add_uint32(p + "rope.dimension_count", HD_F)
    w.add_uint32(p + "rope.dimension_count_swa", HD_S)
    w.add_float32(p + "rope.freq_base", 1e6)
    w.add_float32(p + "rope.freq_base_swa", 1e4)
    w.add_float32(p + "attention.layer_norm_rms_epsilon", 1e-6)
    w.add_uint32(p + "attention.sliding_window", 1024)
    w.add_array(p + "attention.sliding_window_pattern", swa)
    w.add_uint32(p + "attention.shared_kv_layers", 0)
    w.add_uint32(p + "embedding_length_per_layer_input", 0)
    w.add_float32(p + "final_logit_softcapping", 30.0)

    F16, F32 = gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32

    def add(name, ne, qt=F16):
        shape = list(reversed(ne))
        n = 1
        for x in ne:
            n *= x
        nbytes = n * (2 if qt == F16 else 4)
        w.add_tensor_info(name, shape, np.dtype(np.float16 if qt == F16 else np.float32), nbytes, raw_dtype=qt)

    add("token_embd.weight", [H, vocab])
    add("rope_freqs.weight", [HD_F // 2], F32)
    add("output_norm.weight", [H], F32)
    for i in range(n_layers):
        hd = HD_S if swa[i] else HD_F
        b = f"blk.{i}."
        add(b + "attn_norm.weight", [H], F32)
        add(b + "attn_q.weight", [H, NH * hd])
        add(b + "attn_k.weight", [H, NKV * hd])
        if swa[i] or not k_eq_v:
            add(b + "attn_v.weight", [H, NKV * hd])
        add(b + "attn_q_norm.weight", [hd], F32)
        add(b + "attn_k_norm.weight", [hd], F32)
        add(b + "attn_output.weight", [NH * hd, H])
        add(b + "post_attention_norm.weight", [H], F32)
        add(b + "ffn_norm.weight", [H], F32)
        add(b + "ffn_gate.weight", [H, FF])
        add(b + "ffn_up.weight", [H, FF])
        add(b + "ffn_down.weight", [FF, H])
        add(b + "post_ffw_norm.weight", [H], F32)
        add(b + "layer_output_scale.weight", [1], F32)

    total = sum(gguf.GGUFWriter.ggml_pad(ti.nbytes, w.data_alignment) for ti in w.tensors[0].values())
    w.write_header_to_file(out)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    fout = w.fout[0]
    fout.flush()
    start = gguf.GGUFWriter.ggml_pad(fout.tell(), w.data_alignment)
    w.close()
    os.truncate(out, start + total)   # sparse: zeros, no disk blocks
    print(f"wrote {out}: {n_layers} layers, k_eq_v={k_eq_v}, apparent size {(start + total) / 2**30:.1f} GiB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf-py", default=None, help="path of a gguf-py checkout to import gguf from")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("paths", nargs="+", type=Path)
    m = sub.add_parser("make-refs")
    m.add_argument("--llama-cpp", type=Path, required=True)
    m.add_argument("--quantize", type=Path, default=None)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--outtypes", default="f32,f16,bf16,q8_0")
    m.add_argument("ckpts", nargs="+", type=Path)
    s = sub.add_parser("make-12b")
    s.add_argument("out", type=Path)
    s.add_argument("--layers", type=int, default=6)
    s.add_argument("--k-eq-v", action="store_true", help="no attn_v on full-attention layers")
    s.add_argument("--quantize", type=Path, default=None, help="llama-quantize binary: also write dry-run logs")
    a = ap.parse_args(argv)

    if a.cmd == "check":
        return _check_paths(a.paths)
    if a.cmd == "make-refs":
        return _make_refs(a.llama_cpp, a.quantize, a.out, a.ckpts, a.outtypes.split(","))
    if a.cmd == "make-12b":
        _import_gguf(a.gguf_py)
        _make_12b(a.out, a.layers, a.k_eq_v)
        if a.quantize:
            for ot, qn in QUANT_NAME.items():
                log = a.out.with_name(f"{a.out.stem}.{ot}.dryrun.log")
                r = subprocess.run([str(a.quantize), "--dry-run", str(a.out), qn], capture_output=True, text=True, errors="replace")
                log.write_text(r.stdout + r.stderr)
                print(f"{qn}: rc={r.returncode} -> {log}")
                if r.returncode != 0:
                    print((r.stdout + r.stderr)[-3000:])
                    return 1
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
