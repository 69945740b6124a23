"""Subprocess worker for the truncated-file tests; prints one JSON line.

`model PATH TOKPATH`: loads the model at PATH and opens TOKPATH (a copy), truncates both files
while they are mapped, then calls the entry points that read the mappings and reports each
call's exception (type and message) or "returned". A read past a file's new end raises SIGBUS;
without the reader's guard that kills this process, which the test sees as a signal exit.

`sidecars PATH ASSISTANT MMPROJ`: the same for a drafter (speculative generate) and a multimodal
projector (embed_image, embed_audio): each call after the truncation must raise, or return what
it returned before (a part held in memory since the load reads nothing from the file).

`foreign PATH SCRATCH`: opens PATH (installing the guard), then reads a truncated Python mmap of
SCRATCH, which is not ours: the guard must pass that fault on, so the process dies of SIGBUS."""
import json
import mmap
import os
import sys

import unigemma
from unigemma import _core


def outcome(fn):
    try:
        fn()
        return "returned"
    except Exception as e:  # noqa: BLE001 - reported to the test
        return f"{type(e).__name__}: {e}"


mode, path, other = sys.argv[1:4]
if mode == "foreign":
    f = _core.GGUFFile(path, validate_model=False)
    with open(other, "wb") as out:
        out.write(b"x" * (1 << 20))
    with open(other, "rb") as fd:
        mm = mmap.mmap(fd.fileno(), 0, access=mmap.ACCESS_READ)
    os.truncate(other, 0)
    print(json.dumps({"read": mm[(1 << 20) - 1]}), flush=True)  # SIGBUS: not reached
    sys.exit(0)

if mode == "sidecars":
    import numpy as np

    import shutil

    assistant, mmproj = other, sys.argv[4]
    mmproj_audio = mmproj + ".audio.gguf"  # its own copy: a damaged file stays flagged
    shutil.copy(mmproj, mmproj_audio)
    m = unigemma.Model(path, n_ctx=64, draft=assistant, draft_tokens=2)
    p, pa = _core.MMProjector(mmproj), _core.MMProjector(mmproj_audio)
    gen = lambda: m.generate("Hello", max_tokens=4, stop_tokens=[]).tokens
    rng = np.random.default_rng(0)
    patches = rng.random((4, p.patch_values), dtype=np.float32)
    pos = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.int32)
    frames = rng.uniform(-0.5, 0.5, (3, p.audio_frame_size)).astype(np.float32)
    calls = {"generate_with_draft": gen}
    if p.has_vision:
        calls["embed_image"] = lambda: p.embed_image(patches, pos)
    if p.has_audio:
        calls["embed_audio"] = lambda: pa.embed_audio(frames)
    before = {k: fn() for k, fn in calls.items()}
    os.truncate(assistant, 4096)
    os.truncate(mmproj, 4096)
    os.truncate(mmproj_audio, 4096)
    res = {}
    for k, fn in calls.items():
        try:
            got = fn()
            same = np.array_equal(np.asarray(got), np.asarray(before[k]))
            res[k] = "returned the same" if same else "returned something else"
        except Exception as e:  # noqa: BLE001 - reported to the test
            res[k] = f"{type(e).__name__}: {e}"
    print(json.dumps(res), flush=True)
    sys.exit(0)

m = unigemma.Model(path, n_ctx=64)
f = _core.GGUFFile(path, validate_model=False)
g = _core.GGUFFile(other, validate_model=False)
ids = m.tokenize("Hello")
before = m.logits(ids)
last = max(f.tensors, key=lambda t: t.offset)  # the tensor stored last: past any truncation point
first = min(f.tensors, key=lambda t: t.offset)
# keep the header and the start of the data: the later weight pages are gone
os.truncate(path, os.path.getsize(path) - last.n_bytes - (last.offset - first.offset) // 2)
os.truncate(other, 1 << 20)  # inside the vocabulary strings

res = {
    "finite_before": bool(before.size and (before == before).all()),
    "logits": outcome(lambda: m.logits(ids)),
    "generate": outcome(lambda: m.generate("Hello", max_tokens=3)),
    "tensor_float": outcome(lambda: f.tensor_float(last.name)),
    "tokenizer": outcome(lambda: _core.Tokenizer(g)),
}
print(json.dumps(res), flush=True)
