#!/usr/bin/env python3
"""Checks that the C++ folders of csrc/ are layers and that each folder is its namespace.

Layers, lowest first: a file may include its own folder and the folders BELOW it in this list,
never one above (docs/architecture.md explains what each layer is):

    base  gguf  quant  tokenizer  ops  model  sampling  grammar  preprocess  bindings

Inside ops/, backend-neutral headers (ops/*.h) sit under the backends: ops/cpu, ops/cuda and ops/webgpu
include ops/*.h and their own folder, never each other, and ops/*.h includes no backend.
tools/bench (measurement code, kept out of the core library) may include any layer below
bindings; nothing in csrc/ includes it except bindings/.

Namespaces: a file in csrc/<folder>/ (or csrc/ops/<backend>/) opens only
`namespace unigemma::<leaf folder>` or nested ones below it (unigemma::model::detail), plus
anonymous namespaces; base/error.h re-exports its error types into `unigemma` with using
declarations, the one allowed use of the bare `namespace unigemma`.

Usage: python tools/check_layers.py [CSRC_DIR]  (default: this checkout's csrc/).
Exit status 1 with one line per violation (file:line: what), 0 when clean.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
LAYERS = ["base", "gguf", "quant", "tokenizer", "ops", "model", "sampling", "grammar", "preprocess", "bindings"]
RANK = {name: i for i, name in enumerate(LAYERS)}
OPS_BACKENDS = {"cpu", "cuda", "webgpu"}
SOURCE_SUFFIXES = {".h", ".hpp", ".cpp", ".cc", ".cu", ".cuh"}
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
NAMESPACE = re.compile(r"^\s*namespace\s+([A-Za-z_][\w:]*)\s*\{")
BARE_NAMESPACE_OK = {"base/error.h"}


def unit_of(rel: Path) -> tuple[str, str | None]:
    """(layer, ops backend or None) of a path relative to csrc/."""
    parts = rel.parts
    layer = parts[0]
    backend = parts[1] if layer == "ops" and len(parts) > 2 else None
    return layer, backend


def check_include(rel: Path, line_no: int, target: str, errors: list[str]) -> None:
    layer, backend = unit_of(rel)
    where = f"csrc/{rel}:{line_no}"
    head = target.split("/")[0]
    if head == "bench":
        if layer != "bindings":
            errors.append(f"{where}: includes \"{target}\" (benchmark code is for bindings only)")
        return
    if head not in RANK:
        if (CSRC / rel.parent / target).exists():
            errors.append(f"{where}: includes \"{target}\" relative to its folder; spell it from csrc/")
        return  # a system or third-party header in quotes
    if RANK[head] > RANK[layer]:
        errors.append(f"{where}: {layer}/ includes \"{target}\", a higher layer ({head}/)")
        return
    if head == "ops" and layer == "ops":
        tparts = target.split("/")
        tbackend = tparts[1] if len(tparts) > 2 else None
        if backend is None and tbackend is not None:
            errors.append(f"{where}: ops/{rel.name} (backend-neutral) includes the {tbackend} backend \"{target}\"")
        elif backend is not None and tbackend is not None and tbackend != backend:
            errors.append(f"{where}: ops/{backend}/ includes another backend's \"{target}\"")


def check_namespace(rel: Path, line_no: int, ns: str, errors: list[str]) -> None:
    layer, backend = unit_of(rel)
    leaf = backend or layer
    where = f"csrc/{rel}:{line_no}"
    if ns == "unigemma" and str(rel) in BARE_NAMESPACE_OK:
        return
    want = f"unigemma::{leaf}"
    if ns != want and not ns.startswith(want + "::"):
        errors.append(f"{where}: namespace {ns} in {layer}/{backend + '/' if backend else ''} (expected {want})")


def main(argv: list[str]) -> int:
    global CSRC
    if argv:
        CSRC = Path(argv[0]).resolve()
    errors: list[str] = []
    files = sorted(p for p in CSRC.rglob("*") if p.suffix in SOURCE_SUFFIXES)
    for path in files:
        rel = path.relative_to(CSRC)
        if rel.parts[0] not in RANK:
            errors.append(f"csrc/{rel}: folder {rel.parts[0]}/ is not a layer (tools/check_layers.py LAYERS)")
            continue
        if rel.parts[0] == "ops" and len(rel.parts) > 2 and rel.parts[1] not in OPS_BACKENDS:
            errors.append(f"csrc/{rel}: ops/{rel.parts[1]}/ is not a known backend (OPS_BACKENDS)")
        for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if m:
                check_include(rel, i, m.group(1), errors)
                continue
            m = NAMESPACE.match(line)
            if m and m.group(1) not in ("py", "detail"):
                check_namespace(rel, i, m.group(1), errors)
    for e in errors:
        print(e)
    print(f"check_layers: {len(files)} files, {len(errors)} violation(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
