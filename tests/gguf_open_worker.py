"""Subprocess worker for the mutation test: reads file paths from stdin, opens each with the
model check, touches every tensor, and answers one line per file: `ok`, `gguf` (GGUFError)
or `other <exception>` (a bug). A crash shows as the pipe closing."""
import sys

import unigemma

for line in sys.stdin:
    path = line.strip()
    try:
        f = unigemma.open_gguf(path)
        for t in f.tensors:
            f.tensor_bytes(t.name).sum()
            if t.type in ("F32", "F16", "BF16", "Q8_0", "Q4_0"):
                f.tensor_float(t.name)
        for k in f.keys():
            f[k]
        print("ok", flush=True)
    except unigemma.GGUFError:
        print("gguf", flush=True)
    except Exception as e:  # noqa: BLE001 - reported as a failure by the test
        print(f"other {type(e).__name__}: {e}", flush=True)
