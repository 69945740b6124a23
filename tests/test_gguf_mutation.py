"""Mutated valid GGUF files (truncated, bytes flipped, lengths/counts/offsets rewritten) either
load or raise GGUFError, in a subprocess so that a crash fails the test instead of the run."""
from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gguf_samples import write_gemma4

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory) -> bytes:
    p = tmp_path_factory.mktemp("seed") / "seed.gguf"
    write_gemma4(p)
    return p.read_bytes()


class Worker:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, str(HERE / "gguf_open_worker.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=HERE)

    def ask(self, path: Path) -> str:
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise AssertionError(f"reader process died (exit {code}) on {path}")
        return line.strip()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


def _header_field_offsets(data: bytes) -> list[int]:
    """Offsets of every u64 that looks like a length/count/dim/offset in the header region."""
    end = min(len(data), 4096)
    return [i for i in range(8, end - 8, 1)]


mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("u64"), st.integers(0, 10**9), st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1])),
    st.tuples(st.just("u32"), st.integers(0, 10**9), st.sampled_from([0, 5, 9, 13, 31, 4, 2**31, 2**32 - 1])),
)


def apply(data: bytes, m) -> bytes:
    kind = m[0]
    b = bytearray(data)
    header = min(len(b), 6000)  # most structure lives in the first few KB (keys, tensor table)
    if kind == "truncate":
        return bytes(b[: int(m[1] * len(b))])
    if kind == "flip":
        for pos, x in m[1]:
            if header:
                b[pos % header] ^= x
        return bytes(b)
    if len(b) < 16:
        return bytes(b)
    pos = m[1] % (header - 8)
    if kind == "u64":
        b[pos:pos + 8] = struct.pack("<Q", m[2])
    else:
        b[pos:pos + 4] = struct.pack("<I", m[2])
    return bytes(b)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(muts=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_files_load_or_raise(seed_file, worker, tmp_path_factory, muts):
    data = seed_file
    for m in muts:
        data = apply(data, m)
    p = tmp_path_factory.mktemp("mut") / "m.gguf"
    p.write_bytes(data)
    answer = worker.ask(p)
    assert answer in ("ok", "gguf"), f"{answer} for mutations {muts}"


def test_every_truncation_point_of_the_header(seed_file, worker, tmp_path):
    """Cut the file at every byte of its header region: never a crash, always GGUFError."""
    p = tmp_path / "t.gguf"
    for n in range(0, 1500, 7):
        p.write_bytes(seed_file[:n])
        assert worker.ask(p) == "gguf", n
