"""`unigemma run` / `unigemma chat` as subprocesses on the real Gemma 3 270M: stdout carries only
the generated text, timings go to stderr, errors are one line with exit code 1."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import unigemma


def cli(*args, stdin=None, timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.path.dirname(os.path.dirname(unigemma.__file__)),
                                                    env.get("PYTHONPATH", "")] if p)
    return subprocess.run([sys.executable, "-m", "unigemma.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def model_path():
    return str(unigemma.default_model_path())


@pytest.fixture(scope="module")
def ref(model_path):
    return unigemma.Model(model_path, n_ctx=512)


def test_run_prints_only_generated_text(model_path, ref):
    r = cli("run", model_path, "-p", "Once upon a time", "-n", "8", "--temp", "0", "-c", "512")
    assert r.returncode == 0, r.stderr
    want = ref.generate("Once upon a time", max_tokens=8).text
    assert r.stdout == want + "\n"
    assert "prompt eval: 5 tokens" in r.stderr and "| eval: 8 tokens" in r.stderr and "tok/s" in r.stderr
    assert "Traceback" not in r.stderr


def test_run_default_model_and_prompt_and_chat_flag(ref):
    r = cli("run", "-n", "6", "-c", "256", "--seed", "1", "--temp", "0.7", "--top-k", "20", "--top-p", "0.9",
            "--min-p", "0.05", "--repeat-penalty", "1.1", "-t", "1", "--kv", "q8_0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and "embedded default model" in r.stderr and "no prompt given" in r.stderr
    r = cli("run", "-p", "Hello", "--chat", "-n", "5", "-c", "256")
    assert r.returncode == 0, r.stderr
    want = ref.chat([{"role": "user", "content": "Hello"}], max_tokens=5).content
    assert r.stdout == want + "\n"


def test_errors_are_one_line(tmp_path):
    r = cli("run", str(tmp_path / "missing.gguf"), "-p", "x", "-n", "2")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "missing.gguf" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    r = cli("run", str(bad), "-p", "x")
    assert r.returncode == 1 and "error:" in r.stderr and "Traceback" not in r.stderr
    r = cli("run", "-p", "x", "-c", "4", "-n", "8")  # prompt + max_tokens past n_ctx
    assert r.returncode == 1 and "exceeds the context" in r.stderr and "Traceback" not in r.stderr


def test_chat_repl_with_piped_stdin(model_path):
    r = cli("chat", model_path, "-n", "6", "-c", "512", "--system", "Be brief.",
            stdin="Hello there\n/reset\n\nHi\nsecond turn\n/exit\nnever read\n")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("prompt eval:") == 3 and "(conversation cleared)" in r.stderr
    assert r.stdout.count("\n") >= 3 and "Traceback" not in r.stderr
    # the third reply continues the second conversation: its prompt reused the cache
    assert r.stderr.strip().splitlines()[-1].endswith("cached")
    r = cli("chat", model_path, "-n", "4", "-c", "512", stdin="Hi\n")  # EOF ends the session
    assert r.returncode == 0 and r.stderr.count("prompt eval:") == 1
