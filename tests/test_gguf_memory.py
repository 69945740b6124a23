"""The reader's memory stays bounded by the file it reads: a hostile file that declares huge
counts (arrays of arrays, string arrays, key and tensor tables) must not make it allocate many
times its size before (or after) its bytes are checked. Measured as peak RSS in a subprocess."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from gguf_bytes import T_ARR, T_STR, T_U8, gstr

HERE = Path(__file__).resolve().parent
MB = 1 << 20
SIZE = 24 * MB  # large enough that a 2x or 10x blow-up stands far above the interpreter's noise


def _head(n_kv: int, n_tensors: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv)


def _array_key(key: str, elem_type: int, count: int) -> bytes:
    return gstr(key) + struct.pack("<IIQ", T_ARR, elem_type, count)


def _fill(head: bytes, byte: bytes) -> bytes:
    return head + byte * (SIZE - len(head))


def _nested(fill: bytes) -> bytes:
    # as many 12-byte child headers as the rest of the file can hold
    n = (SIZE - len(_head(1) + _array_key("big.nested", T_ARR, 0))) // 12
    return _fill(_head(1) + _array_key("big.nested", T_ARR, n), fill)


def _strings(fill: bytes) -> bytes:
    n = (SIZE - len(_head(1) + _array_key("big.strings", T_STR, 0))) // 8
    return _fill(_head(1) + _array_key("big.strings", T_STR, n), fill)


def _many_keys() -> bytes:
    kv, n = bytearray(), 0
    while len(kv) < SIZE:
        kv += gstr("k%x" % n) + struct.pack("<IB", T_U8, 0)
        n += 1
    return _head(n) + bytes(kv)


def _open(tmp_path, data: bytes, bound: int) -> dict:
    path = tmp_path / "hostile.gguf"
    path.write_bytes(data)
    r = subprocess.run([sys.executable, str(HERE / "gguf_rss_worker.py"), str(path), str(bound)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


# (file, bound on peak RSS growth and on new address space, expected error or None). Walking a
# file touches its mapped pages, so growth up to the file size is the mapping itself.
CASES = {
    # children are 12 bytes in the file but ~120 bytes as decoded Values: kept encoded
    "nested_arrays_invalid": (lambda: _nested(b"\xff"), SIZE + 8 * MB,
                              r"key 'big.nested'\[0\]: unknown array element type"),
    "nested_arrays_valid": (lambda: _nested(b"\x00"), SIZE + 8 * MB, None),
    # the views (16 bytes per string of at least 8 bytes) are allocated after the walk
    "strings_invalid": (lambda: _strings(b"\xff"), SIZE + 8 * MB, r"key 'big.strings'\[0\] \(string of length"),
    "strings_valid": (lambda: _strings(b"\x00"), 3 * SIZE + 8 * MB, None),
    # ~2.4M keys of 10 bytes each would cost ~12x the file in map nodes
    "many_keys": (_many_keys, SIZE + 8 * MB, r"metadata key count \d+ is more than the 65536 supported"),
    # ~500k tensor headers of 33+ bytes fit in the file; each would cost ~220 bytes
    "many_tensors": (lambda: _fill(_head(0, 1 << 19), b"\x00"), SIZE + 8 * MB,
                     r"tensor count 524288 is more than the 65536 supported"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_counts_do_not_blow_up_memory(tmp_path, case):
    make, bound, error = CASES[case]
    data = make()
    res = _open(tmp_path, data, bound)
    if error is None:
        assert res["error"] is None, res["error"]
    else:
        assert res["error"] is not None, "the file opened"
        import re

        assert re.search(error, res["error"]), res["error"]
    assert res["peak_growth"] <= bound, f"peak RSS grew by {res['peak_growth'] / MB:.0f} MB for a {len(data) / MB:.0f} MB file"


def test_nested_array_children_decode_on_demand(tmp_path):
    """Arrays of arrays are kept encoded at open and decoded when read: same values as written."""
    from gguf_bytes import T_I32, RawGGUF

    from unigemma import _core

    raw = RawGGUF().add("a", T_ARR, (T_ARR, [(T_STR, ["x", "yy"]), (T_ARR, [(T_U8, [1, 2])]), (T_I32, [])]))
    path = tmp_path / "nested.gguf"
    path.write_bytes(raw.build())
    f = _core.GGUFFile(str(path), validate_model=False)
    a = f["a"]
    assert a[0] == ["x", "yy"] and a[1][0].tolist() == [1, 2] and a[2].tolist() == [] and len(a) == 3
