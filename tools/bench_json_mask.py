"""Per-step cost of the JSON constraint mask (unigemma.constrained) on a real vocabulary.

    python tools/bench_json_mask.py [MODEL.gguf]

Prints the vocabulary-index build time and, for a set of matcher states, the time of one
mask_logits call on a float32 [n_vocab] row (best and median of repeats) and how many tokens
stay allowed. The "tool:" states run the Gemma 4 tool-call dialect (tool_call_constraint); on a
vocabulary without the <|"|> token (Gemma 3) they use a copy of it whose first unusable
non-EOG token stands in for the delimiter (the same tokens otherwise)."""
from __future__ import annotations

import sys
import time

import numpy as np

import unigemma
from unigemma import _core
from unigemma.constrained import JsonConstraint, TokenVocab, token_vocab

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
TOOL = {"type": "object", "properties": {"location": {"type": "string"}, "note": {"type": "string", "maxLength": 200},
                                         "days": {"type": "integer"}, "unit": {"enum": ["celsius", "fahrenheit"]},
                                         "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["location"]}
Q = '<|"|>'
TOOL_STATES = [
    ("tool: start", TOOL, ""),
    ("tool: after '{' (bare keys)", TOOL, "{"),
    ("tool: inside a bare key", TOOL, "{loc"),
    ("tool: string value start (delimiter only)", TOOL, "{location:"),
    ("tool: inside an unbounded raw string", TOOL, "{location:" + Q + "Par"),
    ("tool: raw string after '<|' (partial delimiter)", TOOL, "{location:" + Q + "a <|"),
    ("tool: inside a maxLength=200 string", TOOL, "{days:3,location:" + Q + "P" + Q + ",note:" + Q + "x"),
    ("tool: after an integer", TOOL, "{days:4"),
    ("tool: enum value start", TOOL, "{location:" + Q + "P" + Q + ",tags:[],unit:"),
    ("tool: array of strings, item start", TOOL, "{location:" + Q + "P" + Q + ",tags:["),
]


def tool_vocab(vocab: TokenVocab) -> TokenVocab:
    if vocab.delimiter_id >= 0:
        return vocab
    eog = set(vocab.eog_ids)
    stand_in = next(i for i in range(vocab.n_vocab) if not vocab.is_usable(i) and i not in eog)
    return TokenVocab([vocab.piece(i) for i in range(vocab.n_vocab)],
                      [vocab.is_usable(i) for i in range(vocab.n_vocab)], list(vocab.eog_ids), stand_in)


def run(label: str, c: JsonConstraint, prefix, row: np.ndarray) -> None:
    c.accept_text(prefix)  # str or bytes
    ts = []
    for _ in range(15):
        row[:] = 0.0
        t = time.perf_counter()
        c.mask_logits(row)
        ts.append(time.perf_counter() - t)
    print(f"{label:48s} best {min(ts) * 1e3:6.2f} ms  median {np.median(ts) * 1e3:6.2f} ms  "
          f"allowed {int(np.isfinite(row).sum()):7d}  threads {c._m.n_threads}")


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else str(unigemma.default_model_path())
    tok = _core.Tokenizer(_core.GGUFFile(path, True))
    t0 = time.perf_counter()
    vocab = token_vocab(tok)
    print(f"vocab index: {time.perf_counter() - t0:.3f} s, {vocab.n_usable} of {vocab.n_vocab} tokens, "
          f"{vocab.n_nodes} trie nodes, {vocab.memory_bytes / 2**20:.1f} MiB")
    row = np.zeros(vocab.n_vocab, np.float32)
    for label, schema, prefix in STATES:
        run(label, JsonConstraint(vocab, schema), prefix, row)
    tv = tool_vocab(vocab)
    if tv is not vocab:
        print(f"tool states: token {tv.delimiter_id} stands in for <|\"|>")
    for label, schema, prefix in TOOL_STATES:
        run(label, JsonConstraint(tv, schema, max_whitespace=0, dialect="gemma4_tool"), prefix, row)


if __name__ == "__main__":
    main()
