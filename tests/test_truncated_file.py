"""A model file truncated while it is mapped must not crash the process: reads past its new end
fault (SIGBUS); the reader's guard turns them into zeros and the next entry point raises a
GGUFError naming the file. Run in subprocesses, so a crash fails the test instead of the run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
WANT = "was truncated or changed while in use"


@pytest.fixture(scope="module")
def tiny_path(hf_ckpt, tmp_path_factory):
    from unigemma.convert import convert

    return convert(hf_ckpt("default"), "f32", tmp_path_factory.mktemp("trunc") / "tiny", progress=False).text


def _run(args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, str(HERE / "truncated_file_worker.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


# UNIGEMMA_REPACK=0 keeps every weight in the mapping; with the default load-time repack the
# large matrices are copies and the faults come from the tensors that stay mapped
@pytest.mark.parametrize("repack", ["0", "1"])
def test_truncated_while_mapped_raises_instead_of_crashing(tiny_path, tmp_path, repack):
    model, tok = tmp_path / "model.gguf", tmp_path / "tok.gguf"
    shutil.copy(tiny_path, model)
    shutil.copy(tiny_path, tok)
    r = _run(["model", model, tok], {"UNIGEMMA_REPACK": repack})
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-3000:]}"
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res.pop("finite_before")
    for call, what in res.items():
        assert what.startswith("GGUFError: ") and WANT in what, f"{call}: {what}"
    assert str(model) in res["logits"] and str(tok) in res["tokenizer"]


def test_truncated_drafter_and_projector_raise_instead_of_crashing(hf_ckpt, tmp_path):
    from unigemma.convert import convert

    res = convert(hf_ckpt("default"), "f32", tmp_path / "side", assistant_dir=hf_ckpt("assistant_default"),
                  progress=False)
    r = _run(["sidecars", res.text, res.assistant, res.mmproj], {"UNIGEMMA_REPACK": "0"})
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-3000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(out) == {"generate_with_draft", "embed_image", "embed_audio"}
    want_file = {"generate_with_draft": str(res.assistant), "embed_image": str(res.mmproj),
                 "embed_audio": str(res.mmproj) + ".audio.gguf"}
    for call, what in out.items():
        # a call may also be unaffected (everything it reads was copied at load): then it must
        # return exactly what it returned before
        assert what == "returned the same" or (what.startswith("GGUFError: ") and WANT in what
                                               and want_file[call] in what), f"{call}: {what}"


def test_faults_outside_our_mappings_still_kill(tiny_path, tmp_path):
    """The guard handles only its own mappings: a fault elsewhere reaches the handler that was
    installed before it (here the default action), as if the guard were not there."""
    r = _run(["foreign", tiny_path, tmp_path / "scratch.bin"])
    assert r.returncode == -signal.SIGBUS, f"exit {r.returncode}: {r.stdout[-500:]} {r.stderr[-2000:]}"
