"""Per-step cost of the JSON constraint mask (unigemma.constrained) on a real vocabulary.

    python tools/bench_json_mask.py [MODEL.gguf]

Prints the vocabulary-index build time and, for a set of matcher states, the time of one
mask_logits call on a float32 [n_vocab] row (best and median of repeats) and how many tokens
stay allowed."""
from __future__ import annotations

import sys
import time

import numpy as np

import unigemma
from unigemma import _core
from unigemma.constrained import JsonConstraint, token_vocab

OBJ = {"type": "object", "properties": {"name": {"type": "string"}, "bio": {"type": "string", "maxLength": 200},
                                        "age": {"type": "integer"}, "score": {"type": "number"},
                                        "tags": {"type": "array", "items": {"type": "string"}},
                                        "kind": {"enum": ["alpha", "beta", "gamma"]}},
       "required": ["name", "age"], "additionalProperties": False}
OVERLAP = {"anyOf": [{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}},
                     {"type": "object", "properties": {"a": {"type": "string"}, "c": {"type": "boolean"}}}]}
STATES = [
    ("json_object: start", None, ""),
    ("json_object: after '{'", None, "{"),
    ("json_object: inside a key", None, '{"ke'),
    ("json_object: value start (any value)", None, '{"key": '),
    ("json_object: inside a string value", None, '{"key": "some text'),
    ("json_object: after a number", None, '{"key": 12'),
    ("json_object: mid UTF-8 character", None, b'{"key": "\xe2'),
    ("schema: after '{' (declared keys only)", OBJ, "{"),
    ("schema: inside a declared key", OBJ, '{"na'),
    ("schema: inside an unbounded string", OBJ, '{"name": "Ann'),
    ("schema: inside a maxLength=200 string", OBJ, '{"name": "Ann", "bio": "x'),
    ("schema: after an integer", OBJ, '{"name": "Ann", "age": 4'),
    ("schema: enum value start", OBJ, '{"name": "A", "age": 1, "kind": '),
    ("schema: array of strings, item start", OBJ, '{"name": "A", "age": 1, "tags": ['),
    ("anyOf overlap: 2 threads, inside a string", OVERLAP, '{"a": "xy'),
]


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else str(unigemma.default_model_path())
    tok = _core.Tokenizer(_core.GGUFFile(path, True))
    t0 = time.perf_counter()
    vocab = token_vocab(tok)
    print(f"vocab index: {time.perf_counter() - t0:.3f} s, {vocab.n_usable} of {vocab.n_vocab} tokens, "
          f"{vocab.n_nodes} trie nodes, {vocab.memory_bytes / 2**20:.1f} MiB")
    row = np.zeros(vocab.n_vocab, np.float32)
    for label, schema, prefix in STATES:
        c = JsonConstraint(vocab, schema)
        c.accept_text(prefix)  # str or bytes
        ts = []
        for _ in range(15):
            row[:] = 0.0
            t = time.perf_counter()
            c.mask_logits(row)
            ts.append(time.perf_counter() - t)
        print(f"{label:45s} best {min(ts) * 1e3:6.2f} ms  median {np.median(ts) * 1e3:6.2f} ms  "
              f"allowed {int(np.isfinite(row).sum()):7d}  threads {c._m.n_threads}")


if __name__ == "__main__":
    main()
