"""`unigemma inspect`: architecture, hyper-parameters, tensor table and tokenizer summary of
a GGUF file, and `--compare A B` per-tensor differences for checking conversions."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np

from ._core import GGUFFile

TOKEN_TYPE_NAMES = {1: "normal", 2: "unknown", 3: "control", 4: "user_defined", 5: "unused", 6: "byte"}


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def _short(v, limit: int = 8):
    if isinstance(v, np.ndarray):
        items = v.tolist()
    elif isinstance(v, list):
        items = v
    else:
        if isinstance(v, str) and len(v) > 80:
            return repr(v[:77] + "...") + f" ({len(v)} chars)"
        return repr(v) if isinstance(v, str) else str(v)
    head = ", ".join(_short(x) if not isinstance(x, (list, np.ndarray)) else "[...]" for x in items[:limit])
    more = f", ... ({len(items)} items)" if len(items) > limit else ""
    return f"[{head}{more}]"


def summarize(f: GGUFFile) -> dict:
    """Everything `inspect` prints, as plain data."""
    arch = f.get("general.architecture")
    hparams = {}
    general = {}
    for k in f.keys():
        if k.startswith("tokenizer."):
            continue
        if k.startswith("general."):
            general[k] = f[k]
        else:
            hparams[k] = f[k]
    tensors = [
        {"name": t.name, "type": t.type, "ne": list(t.ne), "bytes": t.n_bytes, "offset": t.offset, "part": t.part}
        for t in f.tensors
    ]
    by_type = Counter()
    bytes_by_type = Counter()
    for t in f.tensors:
        by_type[t.type] += 1
        bytes_by_type[t.type] += t.n_bytes
    return {
        "paths": f.paths,
        "version": f.version,
        "alignment": f.alignment,
        "architecture": arch,
        "file_bytes": f.file_bytes,
        "tensor_data_bytes": f.tensor_data_bytes,
        "general": general,
        "hparams": hparams,
        "tokenizer": tokenizer_summary(f),
        "tensors": tensors,
        "tensor_types": {k: {"count": by_type[k], "bytes": bytes_by_type[k]} for k in sorted(by_type)},
    }


def tokenizer_summary(f: GGUFFile) -> dict | None:
    tokens = f.get("tokenizer.ggml.tokens")
    if tokens is None:
        return None
    out: dict = {"model": f.get("tokenizer.ggml.model"), "pre": f.get("tokenizer.ggml.pre"), "vocab_size": len(tokens)}
    types = f.get("tokenizer.ggml.token_type")
    if types is not None:
        c = Counter(int(x) for x in types)
        out["token_types"] = {TOKEN_TYPE_NAMES.get(k, str(k)): v for k, v in sorted(c.items())}
    merges = f.get("tokenizer.ggml.merges")
    out["merges"] = len(merges) if merges is not None else 0
    for name in ("bos", "eos", "unknown", "padding", "mask"):
        tid = f.get(f"tokenizer.ggml.{name}_token_id")
        if tid is not None:
            out[f"{name}_token"] = {"id": int(tid), "text": tokens[tid] if 0 <= tid < len(tokens) else None}
    for flag in ("add_bos_token", "add_eos_token", "add_space_prefix"):
        v = f.get(f"tokenizer.ggml.{flag}")
        if v is not None:
            out[flag] = bool(v)
    tmpl = f.get("tokenizer.chat_template")
    out["chat_template_chars"] = len(tmpl) if tmpl else 0
    if types is not None:
        out["control_tokens_sample"] = [tokens[i] for i, t in enumerate(types) if int(t) == 3][:12]
    out["first_tokens"] = tokens[:8]
    return out


def format_summary(s: dict, show_tensors: bool = True) -> str:
    lines = []
    lines.append(f"file:          {', '.join(s['paths'])}")
    lines.append(f"gguf version:  {s['version']}   alignment: {s['alignment']}   size: {_fmt_bytes(s['file_bytes'])}")
    lines.append(f"architecture:  {s['architecture']}")
    lines.append(f"tensors:       {len(s['tensors'])} ({_fmt_bytes(s['tensor_data_bytes'])} of data)")
    lines.append("tensor types:  " + ", ".join(f"{k} x{v['count']} ({_fmt_bytes(v['bytes'])})" for k, v in s["tensor_types"].items()))
    lines.append("")
    lines.append("general:")
    for k, v in s["general"].items():
        lines.append(f"  {k:<44} {_short(v)}")
    lines.append("hyper-parameters:")
    for k, v in s["hparams"].items():
        lines.append(f"  {k:<44} {_short(v)}")
    tok = s["tokenizer"]
    lines.append("tokenizer:")
    if tok is None:
        lines.append("  (none)")
    else:
        lines.append(f"  model {tok['model']!r}, pre {tok['pre']!r}, vocab {tok['vocab_size']}, merges {tok['merges']}")
        if "token_types" in tok:
            lines.append("  token types: " + ", ".join(f"{k} {v}" for k, v in tok["token_types"].items()))
        for name in ("bos", "eos", "unknown", "padding", "mask"):
            if f"{name}_token" in tok:
                t = tok[f"{name}_token"]
                lines.append(f"  {name:<8} id {t['id']:<7} {t['text']!r}")
        flags = [f"{k}={tok[k]}" for k in ("add_bos_token", "add_eos_token", "add_space_prefix") if k in tok]
        if flags:
            lines.append("  " + " ".join(flags))
        lines.append(f"  chat template: {tok['chat_template_chars']} chars")
        if tok.get("control_tokens_sample"):
            lines.append(f"  control tokens: {_short(tok['control_tokens_sample'], 12)}")
    if show_tensors:
        lines.append("")
        w = max([len(t["name"]) for t in s["tensors"]] + [4])
        lines.append(f"  {'#':>4}  {'name':<{w}}  {'type':<7} {'ne (GGUF order)':<24} {'bytes':>12}")
        for i, t in enumerate(s["tensors"]):
            ne = "[" + ", ".join(str(x) for x in t["ne"]) + "]"
            lines.append(f"  {i:>4}  {t['name']:<{w}}  {t['type']:<7} {ne:<24} {t['bytes']:>12}")
    return "\n".join(lines)


def compare(a: GGUFFile, b: GGUFFile) -> dict:
    """Per-tensor max/mean absolute difference of the dequantized values of two files."""
    names_a = [t.name for t in a.tensors]
    names_b = {t.name for t in b.tensors}
    rows = []
    for name in names_a:
        if name not in names_b:
            rows.append({"name": name, "status": "only in A"})
            continue
        ta, tb = a.tensor_info(name), b.tensor_info(name)
        row = {"name": name, "type_a": ta.type, "type_b": tb.type, "ne_a": list(ta.ne), "ne_b": list(tb.ne)}
        if tuple(ta.ne) != tuple(tb.ne):
            row["status"] = "shape differs"
        else:
            xa = a.tensor_float(name).astype(np.float64)
            xb = b.tensor_float(name).astype(np.float64)
            d = np.abs(xa - xb)
            finite = np.isfinite(d)
            row["max_abs"] = float(d[finite].max()) if finite.any() else 0.0
            row["mean_abs"] = float(d[finite].mean()) if finite.any() else 0.0
            row["nonfinite_mismatch"] = int((~finite & ~(np.isnan(xa) & np.isnan(xb))).sum())
            row["identical_bytes"] = bool(ta.type == tb.type and np.array_equal(a.tensor_bytes(name), b.tensor_bytes(name)))
            row["status"] = "ok"
        rows.append(row)
    for name in sorted(names_b - set(names_a)):
        rows.append({"name": name, "status": "only in B"})
    meta = []
    for k in sorted(set(a.keys()) | set(b.keys())):
        va, vb = a.get(k), b.get(k)
        same = _values_equal(va, vb)
        if not same:
            meta.append({"key": k, "a": _short(va), "b": _short(vb)})
    return {"tensors": rows, "metadata_differences": meta}


def _values_equal(x, y) -> bool:
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        try:
            return np.array_equal(np.asarray(x), np.asarray(y))
        except Exception:
            return False
    return x == y


def format_compare(c: dict) -> str:
    lines = []
    w = max([len(r["name"]) for r in c["tensors"]] + [4])
    lines.append(f"{'name':<{w}}  {'A':<7} {'B':<7} {'max|a-b|':>12} {'mean|a-b|':>12}  note")
    for r in c["tensors"]:
        if r["status"] != "ok":
            lines.append(f"{r['name']:<{w}}  {r.get('type_a', '-'):<7} {r.get('type_b', '-'):<7} {'':>12} {'':>12}  {r['status']}")
            continue
        note = "identical bytes" if r["identical_bytes"] else ""
        if r["nonfinite_mismatch"]:
            note += f" {r['nonfinite_mismatch']} non-finite mismatches"
        lines.append(f"{r['name']:<{w}}  {r['type_a']:<7} {r['type_b']:<7} {r['max_abs']:>12.4g} {r['mean_abs']:>12.4g}  {note}")
    if c["metadata_differences"]:
        lines.append("")
        lines.append("metadata differences:")
        for m in c["metadata_differences"]:
            lines.append(f"  {m['key']}: A={m['a']} B={m['b']}")
    else:
        lines.append("\nmetadata: identical")
    return "\n".join(lines)


def to_json(obj) -> str:
    def default(o):
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, (np.integer,)):
            return int(o)
        if isinstance(o, (np.floating,)):
            return float(o)
        return str(o)

    return json.dumps(obj, default=default, indent=1)
