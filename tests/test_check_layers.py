"""tools/check_layers.py: the real tree is clean, and each kind of violation is caught."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "check_layers.py"


def run(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True)


def test_source_tree_is_layered():
    r = run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert ", 0 violation(s)" in r.stdout


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_violations_are_reported(tmp_path):
    write(tmp_path, "base/error.h", "namespace unigemma::base {\n}\nnamespace unigemma {\n}\n")
    write(tmp_path, "model/ok.cpp", '#include "ops/cpu/kernels.h"\n#include <vector>\nnamespace unigemma::model::detail {\n}\n')
    write(tmp_path, "ops/cpu/up.cpp", '#include "model/text_model.h"\nnamespace unigemma::cpu {\n}\n')
    write(tmp_path, "ops/cuda/cross.cu", '#include "ops/cpu/kernels.h"\nnamespace unigemma::cuda {\n}\n')
    write(tmp_path, "ops/neutral.h", '#include "ops/cuda/kernels.h"\nnamespace unigemma::ops {\n}\n')
    write(tmp_path, "sampling/wrong_ns.cpp", "namespace unigemma::grammar {\n}\n")
    write(tmp_path, "gguf/bench.cpp", '#include "bench/bench_probes.h"\nnamespace unigemma::gguf {\n}\n')
    write(tmp_path, "runtime/old.cpp", "namespace unigemma::runtime {\n}\n")
    r = run(tmp_path)
    assert r.returncode == 1
    out = r.stdout
    assert "csrc/ops/cpu/up.cpp:1: ops/ includes \"model/text_model.h\", a higher layer (model/)" in out
    assert "ops/cuda/ includes another backend's \"ops/cpu/kernels.h\"" in out
    assert "(backend-neutral) includes the cuda backend" in out
    assert "namespace unigemma::grammar in sampling/ (expected unigemma::sampling)" in out
    assert "benchmark code is for bindings only" in out
    assert "folder runtime/ is not a layer" in out
    assert "model/ok.cpp" not in out and "base/error.h" not in out
    assert "6 violation(s)" in out
