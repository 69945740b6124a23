#!/usr/bin/env python3
"""atheris fuzz target for the GGUF reader and model schema check.

The native parser is not coverage-instrumented (gcc build), so inputs are read as edit
scripts applied to a valid seed file (truncate, flip bytes, overwrite a u32/u64 with an
interesting value), which keeps every case deep inside the format; one case in eight uses
the raw input as the file. Each case is written to a file on tmpfs and opened with the full model validation; every
tensor and key is touched. The only acceptable failure is unigemma.GGUFError (or InputError
for a tensor type we cannot dequantize): anything else, or a crash, is a finding.

    python tools/fuzz/fuzz_gguf.py -max_total_time=60
The seed is a valid tiny gemma4 file from tests/gguf_samples.py."""
import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import unigemma

TMP = Path(os.environ.get("UNIGEMMA_FUZZ_TMP", "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()))
PATH = TMP / f"unigemma-fuzz-{os.getpid()}.gguf"


SEED = b""
INTERESTING = [0, 1, 2, 3, 4, 5, 13, 31, 32, 33, 255, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
               2**62, 2**63 - 1, 2**63, 2**64 - 1]


def mutate(data: bytes) -> bytes:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 7) == 0:
        return fdp.ConsumeBytes(fdp.remaining_bytes())
    b = bytearray(SEED)
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        if len(b) < 16:
            break
        op = fdp.ConsumeIntInRange(0, 3)
        # most structure is in the first KB (header, keys, tensor table)
        hot = min(len(b) - 8, 4096) if fdp.ConsumeBool() else len(b) - 8
        pos = fdp.ConsumeIntInRange(0, hot)
        if op == 0:
            del b[fdp.ConsumeIntInRange(0, len(b)):]
        elif op == 1:
            b[pos] ^= fdp.ConsumeIntInRange(1, 255)
        elif op == 2:
            v = INTERESTING[fdp.ConsumeIntInRange(0, len(INTERESTING) - 1)] if fdp.ConsumeBool() else fdp.ConsumeInt(8) % 2**64
            b[pos:pos + 8] = v.to_bytes(8, "little")
        else:
            v = INTERESTING[fdp.ConsumeIntInRange(0, len(INTERESTING) - 1)] % 2**32
            b[pos:pos + 4] = v.to_bytes(4, "little")
    return bytes(b)


def TestOneInput(data: bytes):
    PATH.write_bytes(mutate(data))
    try:
        f = unigemma.open_gguf(PATH)
    except unigemma.GGUFError:
        return
    for k in f.keys():
        f[k]
    for t in f.tensors:
        f.tensor_bytes(t.name)
        try:
            f.tensor_float(t.name)
        except unigemma.InputError:
            pass  # a valid type that has no dequantizer


def make_seed() -> bytes:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from gguf_samples import write_gemma4

    p = TMP / f"unigemma-fuzz-seed-{os.getpid()}.gguf"
    write_gemma4(p)
    data = p.read_bytes()
    p.unlink()
    return data


if __name__ == "__main__":
    SEED = make_seed()
    try:
        atheris.Setup(sys.argv, TestOneInput)
        atheris.Fuzz()
    finally:
        PATH.unlink(missing_ok=True)
