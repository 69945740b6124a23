"""JSON-constrained decoding (unigemma.constrained, csrc/runtime/json_grammar.*) on the real
Gemma 3 270M vocabulary: random-logits generation validated by `jsonschema`, mask / accept
agreement, unsupported keywords, EOG handling, split UTF-8, token bounds, and one real-model run.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

jsonschema = pytest.importorskip("jsonschema")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import unigemma  # noqa: E402
from unigemma import _core  # noqa: E402
from unigemma.constrained import JsonConstraint, schema_from_response_format, token_vocab  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    try:
        path = unigemma.default_model_path()
    except _core.InputError as e:  # pragma: no cover - depends on the install
        pytest.skip(str(e))
    return _core.Tokenizer(_core.GGUFFile(str(path), True))


@pytest.fixture(scope="module")
def vocab(tok):
    return token_vocab(tok)


@pytest.fixture(scope="module")
def pieces(vocab):
    return [vocab.piece(i) for i in range(vocab.n_vocab)]


@pytest.fixture(scope="module")
def bias(pieces):
    """Logit offsets that make random generation finish in a few dozen tokens: structural
    tokens (closing quotes and brackets, commas) get pushed up, so strings, arrays and
    objects end soon. `close` grows with the step number."""
    n = len(pieces)
    close = np.zeros(n, np.float32)
    comma = np.zeros(n, np.float32)
    rx_close, rx_comma, rx_open = re.compile(rb'["}\]]'), re.compile(rb","), re.compile(rb"[{\[]")
    for i, p in enumerate(pieces):
        if rx_open.search(p):
            continue
        if rx_close.search(p):
            close[i] = 1.0
        elif rx_comma.search(p):
            comma[i] = 1.0
    return close, comma


def sample(logits: np.ndarray, rng: np.random.Generator) -> int:
    idx = np.flatnonzero(np.isfinite(logits))
    assert idx.size > 0, "the mask left no token"
    z = logits[idx]
    w = np.exp(z - z.max()).astype(np.float64)
    c = np.cumsum(w)
    return int(idx[min(int(np.searchsorted(c, rng.random() * c[-1], side="right")), idx.size - 1)])


def generate(vocab, pieces, bias, schema, seed, max_steps=600, check_every=1, constraint=None):
    """Random-logits generation under the constraint until EOG. Checks at every step that the
    sampled token was allowed and that the mask agrees with is_allowed() on a few probes."""
    c = JsonConstraint(vocab, schema) if constraint is None else constraint
    rng = np.random.default_rng(seed)
    n = vocab.n_vocab
    base = rng.standard_normal(n).astype(np.float32) * 1.5
    close, comma = bias
    eog = set(vocab.eog_ids)
    out: list[int] = []
    for step in range(max_steps):
        logits = np.roll(base, int(rng.integers(n))) + close * (4.0 + step / 15) + comma * 3.0
        c.mask_logits(logits)
        ok = np.isfinite(logits)
        if step % check_every == 0:
            probes = np.concatenate([rng.integers(0, n, 6), rng.choice(np.flatnonzero(close), 6)])
            for t in probes:
                assert c.is_allowed(int(t)) == bool(ok[t]), (step, int(t), pieces[t])
        t = sample(logits, rng)
        assert ok[t]
        if t in eog:
            assert c.complete
            assert not c.is_allowed(int(np.flatnonzero(close)[0])) or not c.done
            break
        assert not c.done
        c.accept(t)  # raises ValueError if not allowed
        out.append(t)
    else:
        pytest.fail(f"no EOG within {max_steps} tokens: {b''.join(pieces[t] for t in out)[:300]!r}")
    text = b"".join(pieces[t] for t in out).decode("utf-8")  # strict: must be valid UTF-8
    return text, out, c


def validate(text: str, schema):
    value = json.loads(text)
    if schema is None:
        assert isinstance(value, dict)
    else:
        jsonschema.Draft202012Validator(schema).validate(value)
    return value


SCHEMAS = {
    "json_object": None,
    "person": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer"},
            "email": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 4},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    },
    "enum_const": {
        "type": "object",
        "properties": {
            "color": {"enum": ["red", "green", "blue", 1, None, 'a"b\n', "é€😀"]},
            "ok": {"type": "boolean"},
            "v": {"const": {"x": [1, 2.5, "s"], "y": None}},
        },
        "required": ["color", "ok", "v"],
    },
    "number_array": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 5},
    "overlapping_anyof": {
        "anyOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
             "additionalProperties": False},
            {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string", "maxLength": 6}},
             "required": ["a", "b"], "additionalProperties": False},
            {"type": "string", "minLength": 2, "maxLength": 12},
        ]
    },
    "recursive_ref": {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"v": {"type": "integer"},
                               "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
                "required": ["v"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/node",
    },
    "tuple": {
        "type": "array",
        "prefixItems": [{"type": "string", "minLength": 3, "maxLength": 6}, {"type": "integer"}, {"type": "boolean"}],
        "items": False,
        "minItems": 3,
    },
    "additional_schema": {
        "type": "object",
        "properties": {"id": {"type": "integer"}},
        "required": ["id"],
        "additionalProperties": {"type": "string", "maxLength": 5},
    },
    "pydantic_style": {
        "$defs": {"Color": {"enum": ["r", "g"], "title": "Color", "type": "string"}},
        "properties": {
            "c": {"$ref": "#/$defs/Color"},
            "n": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "title": "N"},
            "items": {"type": "array", "items": {"type": "number"}, "maxItems": 3, "title": "Items"},
        },
        "required": ["c", "items"],
        "title": "M",
        "type": "object",
    },
    "top_string": {"type": "string", "minLength": 1, "maxLength": 10},
    "top_integer": {"type": "integer"},
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_random_generation_validates(vocab, pieces, bias, name):
    schema = SCHEMAS[name]
    texts = set()
    for seed in range(3):
        text, toks, c = generate(vocab, pieces, bias, schema, seed)
        validate(text, schema)
        texts.add(text)
        if name != "top_integer":  # a complete number may go on; everything else ends
            assert c.done
            allowed = c.allowed_tokens()
            assert set(np.flatnonzero(allowed)) == set(vocab.eog_ids)
    assert len(texts) > 1 or name == "top_integer"  # the random logits do explore


def _names():
    return st.text(alphabet='ab"\\é\n ', min_size=1, max_size=4)


_leaf = st.one_of(
    st.just({"type": "integer"}),
    st.just({"type": "number"}),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.builds(lambda lo, extra: {"type": "string", "minLength": lo, "maxLength": lo + extra},
              st.integers(0, 3), st.integers(0, 5)),
    st.lists(st.one_of(st.text(alphabet='xy"\\é\t', max_size=3), st.integers(-20, 20), st.booleans(), st.none()),
             min_size=1, max_size=4, unique_by=lambda x: json.dumps(x)).map(lambda vs: {"enum": vs}),
)


def _extend(children):
    props = st.lists(st.tuples(_names(), children, st.booleans()), max_size=3, unique_by=lambda t: t[0])
    obj = st.builds(
        lambda items, addl: {
            "type": "object",
            "properties": {k: s for k, s, _ in items},
            "required": [k for k, _, r in items if r],
            "additionalProperties": addl,
        },
        props, st.one_of(st.just(False), children))
    arr = st.builds(lambda item, lo, extra: {"type": "array", "items": item, "minItems": lo, "maxItems": lo + extra},
                    children, st.integers(0, 2), st.integers(0, 2))
    any_of = st.lists(children, min_size=1, max_size=3).map(lambda alts: {"anyOf": alts})
    return st.one_of(obj, arr, any_of)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(schema=st.recursive(_leaf, _extend, max_leaves=6), seed=st.integers(0, 2**16))
def test_hypothesis_schemas(vocab, pieces, bias, schema, seed):
    text, _, _ = generate(vocab, pieces, bias, schema, seed, max_steps=800, check_every=4)
    validate(text, schema)


@pytest.mark.parametrize("schema,keyword", [
    ({"type": "string", "pattern": "^a"}, "pattern"),
    ({"type": "string", "format": "date-time"}, "format"),
    ({"type": "integer", "minimum": 0}, "minimum"),
    ({"type": "number", "multipleOf": 2}, "multipleOf"),
    ({"not": {"type": "string"}}, "not"),
    ({"if": {"type": "string"}, "then": {}}, "if"),
    ({"type": "object", "patternProperties": {"a": {}}}, "patternProperties"),
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"type": "object", "properties": {"x": {"type": "string", "pattern": "a"}}}, "pattern"),
])
def test_unsupported_keywords_raise(vocab, schema, keyword):
    with pytest.raises(_core.InputError, match=rf"\[json_schema\] keyword '{keyword}' is not supported"):
        JsonConstraint(vocab, schema)


@pytest.mark.parametrize("schema,msg", [
    ({"type": "strin"}, "unknown type 'strin'"),
    ({"enum": []}, "no JSON value satisfies"),
    ({"type": "array", "minItems": 3, "maxItems": 1}, "no JSON value satisfies"),
    ({"type": "object", "properties": {"a": False}, "required": ["a"]}, "no JSON value satisfies"),
    ({"$ref": "#/$defs/missing"}, "does not resolve"),
    ({"$ref": "https://example.com/s.json"}, "only local references"),
    ({"required": "a"}, "'required' must be an array"),
    ({"type": "string", "maxLength": -1}, "'maxLength' must be a non-negative integer"),
    ({"allOf": [{"type": "string"}, {"maxLength": 2}]}, "only a one-element allOf"),
    ({"anyOf": [{"type": "string"}], "type": "string"}, "'anyOf' together with 'type'"),
    ({"type": "number", "x": float("nan")}, "not JSON"),
])
def test_bad_schemas_raise(vocab, schema, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        JsonConstraint(vocab, schema)


def test_response_format():
    s = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert schema_from_response_format({"type": "json_object"}) is None
    assert schema_from_response_format(
        {"type": "json_schema", "json_schema": {"name": "x", "schema": s, "strict": True}}) == s
    assert schema_from_response_format({"type": "json_schema", "json_schema": {"name": "x"}}) is None
    for bad in ({"type": "text"}, {"type": "xml"}, {}, "json_object", {"type": "json_schema"},
                {"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}}):
        with pytest.raises(ValueError):
            schema_from_response_format(bad)


def test_vocab_index(tok, vocab):
    assert token_vocab(tok) is vocab  # built once per tokenizer
    assert vocab.n_vocab == tok.n_vocab
    assert sorted(vocab.eog_ids) == sorted(tok.eog_ids)
    assert not any(vocab.is_usable(i) for i in tok.eog_ids)
    ctl = [i for i in range(200) if tok.token_type(i) == 3]
    assert ctl and not any(vocab.is_usable(i) for i in ctl)
    assert vocab.is_usable(tok.find_token("{")) and vocab.is_usable(tok.find_token("<0xE2>"))
    assert not vocab.is_usable(tok.find_token("<start_of_image>"))  # user-defined marker
    assert 250_000 < vocab.n_usable < tok.n_vocab


def _tok_id(tok, text: str) -> int:
    i = tok.find_token(text.replace(" ", "\u2581"))
    assert i >= 0, text
    return i


def test_synthetic_vocab_exact_masks():
    pieces = [b"<eos>", b"{", b"}", b'"', b"a", b"ab", b'"a"', b'":', b" ", b"1", b"12", b",", b'b"}',
              "€".encode(), b"\xe2", b"\x82\xac", b":", b"<ctl>"]
    usable = [True] * (len(pieces) - 1) + [False]
    vocab = _core.TokenVocab(pieces, usable, [0])
    assert vocab.n_usable == len(pieces) - 2  # EOG and the unusable token are not in the trie
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}
    c = JsonConstraint(vocab, schema)

    def allowed():
        return {pieces[i] for i in np.flatnonzero(c.allowed_tokens())}

    def step(piece):
        c.accept(pieces.index(piece))

    assert allowed() == {b"{", b" "}
    step(b"{")
    assert allowed() == {b'"', b"}", b" ", b'"a"'}
    step(b'"')
    assert allowed() == {b"a"}  # "ab" and the empty key are not declared, no additional keys
    step(b"a")
    assert allowed() == {b'"', b'":'}
    step(b'":')
    assert allowed() == {b" ", b"1", b"12"}
    step(b"12")
    assert allowed() == {b"1", b"12", b"}", b" "}  # no ',': no key can follow "a"
    step(b"}")
    assert allowed() == {b"<eos>"} and c.done

    c = JsonConstraint(vocab, {"type": "string"})
    step(b'"')
    assert allowed() == {b'"', b'"a"', b'":', b"a", b"ab", b" ", b"1", b"12", b",", b'b"}', "€".encode(),
                         b"\xe2", b":", b"{", b"}"} - {b'"a"', b'b"}', b'":'}  # those would go on after the string
    step(b"\xe2")
    assert allowed() == {b"\x82\xac"}
    step(b"\x82\xac")
    step(b'"')
    assert c.done and allowed() == {b"<eos>"}


def test_eog_only_after_completion(tok, vocab):
    c = JsonConstraint(vocab, {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
                               "additionalProperties": False})
    eog = set(vocab.eog_ids)
    start = c.allowed_tokens()
    assert not any(start[i] for i in eog)
    assert start[_tok_id(tok, "{")] and not start[_tok_id(tok, "[")]
    with pytest.raises(ValueError, match="end-of-generation"):
        c.accept(tok.eos)
    c.accept_text('{"a": 7')
    mid = c.allowed_tokens()
    assert not any(mid[i] for i in eog) and mid[_tok_id(tok, "}")] and not mid[_tok_id(tok, ",")]
    c.accept(_tok_id(tok, "}"))
    assert c.done and c.complete
    allowed = c.allowed_tokens()
    assert set(np.flatnonzero(allowed)) == eog
    logits = np.zeros(vocab.n_vocab, np.float32)
    c.mask_logits(logits)
    assert set(np.flatnonzero(np.isfinite(logits))) == eog
    with pytest.raises(ValueError, match="not allowed"):
        c.accept(_tok_id(tok, " "))
    c.accept(tok.eos)
    with pytest.raises(ValueError):
        c.accept(tok.eos)


def test_split_utf8_across_tokens(tok, vocab):
    byte = {b: tok.find_token(f"<0x{b:02X}>") for b in (0xE2, 0x82, 0xAC, 0xE0, 0x80, 0xA0, 0x80)}
    c = JsonConstraint(vocab, {"type": "string", "maxLength": 2})
    c.accept(_tok_id(tok, '"'))
    c.accept(byte[0xE2])  # first byte of € (E2 82 AC)
    allowed = c.allowed_tokens()
    # only pieces that start with a continuation byte can follow
    assert allowed.sum() > 0
    assert all(0x80 <= vocab.piece(int(i))[0] <= 0xBF for i in np.flatnonzero(allowed))
    assert not allowed[_tok_id(tok, '"')]
    with pytest.raises(ValueError):
        c.accept(_tok_id(tok, '"'))
    c.accept(byte[0x82])
    assert not c.is_allowed(_tok_id(tok, "a")) and c.is_allowed(byte[0xAC])
    c.accept(byte[0xAC])
    assert c.is_allowed(_tok_id(tok, "a")) and c.is_allowed(_tok_id(tok, '"'))
    c.accept(byte[0xE0])
    assert not c.is_allowed(byte[0x80])  # E0 80 .. is overlong: the 2nd byte must be A0-BF
    c.accept(byte[0xA0])
    c.accept(byte[0x80])  # U+0800
    assert not c.is_allowed(_tok_id(tok, "a"))  # maxLength 2 reached
    c.accept(_tok_id(tok, '"'))
    assert c.done


def test_escapes_and_surrogates(vocab):
    ok = [r'"a\n\t\"\\\/\u00e9\ud83d\ude00"', r'"\uD834\uDD1E"', '"é😀"']
    for s in ok:
        c = JsonConstraint(vocab, {"type": "string"})
        c.accept_text(s)
        assert c.done, s
    for s in [r'"\ud83d"', r'"\ude00', r'"\x', '"\x01', r'"\ud83d\u0041']:
        c = JsonConstraint(vocab, {"type": "string"})
        with pytest.raises(ValueError):
            c.accept_text(s)
    c = JsonConstraint(vocab, {"type": "string", "minLength": 2, "maxLength": 2})
    with pytest.raises(ValueError):
        c.accept_text('"a"')  # too short
    c.accept_text(r'"\ud83d\ude00\n"')  # the surrogate pair is one character
    assert c.done


def test_property_order_required_and_additional(vocab):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"},
                                               "c": {"type": "null"}},
              "required": ["b"], "additionalProperties": {"type": "integer"}}
    c = JsonConstraint(vocab, schema)
    c.accept_text("{")
    for bad in ['}', '"c"', '"x"', '"\\u0061"']:  # b is required first; no additional key before it
        with pytest.raises(ValueError):
            c.accept_text(bad)
    c.accept_text('"b": true')
    snapshot = ['"a"', '"b"', '"\\u0063"', '"\\u0078"']  # no going back, no duplicate, no escaped names
    for bad in snapshot:
        d = JsonConstraint(vocab, schema)
        d.accept_text('{"b": true, ')
        with pytest.raises(ValueError):
            d.accept_text(bad)
    c.accept_text(', "zz\\u0061": 3, "c": null}')  # an additional key may escape after diverging
    assert c.done
    assert json.loads('{"b": true, "zz\\u0061": 3, "c": null}') == {"b": True, "zza": 3, "c": None}


def test_whitespace_is_bounded(vocab):
    c = JsonConstraint(vocab, {"type": "object"}, max_whitespace=4)
    c.accept_text("  {")
    c.accept_text(" \n\t ")
    with pytest.raises(ValueError):
        c.accept_text(" ")
    c.accept_text("}")
    with pytest.raises(ValueError):
        c.accept_text(" ")  # nothing after the value


def test_token_bound_for_bounded_schema(vocab, pieces):
    """Adversarial decoding (always the allowed token with the fewest bytes, preferring
    whitespace) still ends within the byte bound of a bounded schema."""
    schema = {"type": "object", "properties": {"a": {"type": "boolean"}, "b": {"enum": ["x", "yy"]},
                                               "c": {"type": "null"}},
              "required": ["a", "b", "c"], "additionalProperties": False}
    longest = len('{"a":false,"b":"yy","c":null}')
    gaps = 1 + 1 + 3 * 2 + 3 + 2  # before the value, after '{', around ':', after values, after ','
    bound = longest + gaps * 16
    lengths = np.array([len(p) if p else 10**6 for p in pieces])
    ws = np.array([bool(p) and p.strip() == b"" for p in pieces])
    eog = set(vocab.eog_ids)
    for prefer_ws in (True, False):
        c = JsonConstraint(vocab, schema)
        n = 0
        while True:
            allowed = c.allowed_tokens()
            if allowed[list(eog)].any():
                break
            cand = np.flatnonzero(allowed)
            key = lengths[cand] - (1000 * ws[cand] if prefer_ws else 0)
            c.accept(int(cand[np.argmin(key)]))
            n += 1
            assert n <= bound
        assert c.done and 0 < n <= bound


@pytest.mark.parametrize("schema,chunk", [
    (None, '{"a":['),
    (SCHEMAS["recursive_ref"], '{"v":1,"kids":['),
    ({"type": "array", "items": {"$ref": "#"}}, "["),
])
def test_depth_limit_never_dead_ends(vocab, pieces, bias, schema, chunk):
    """Nesting as deep as the matcher allows, then random generation must still finish: no
    container, key or item is opened where what it needs cannot fit."""
    c = JsonConstraint(vocab, schema)
    depth = 0
    while True:
        try:
            c.accept_text(chunk)
        except ValueError:
            break
        depth += 1
        assert depth < 100
    assert depth >= 20
    assert c.allowed_tokens().any()
    text, _, _ = generate(vocab, pieces, bias, schema, 0, max_steps=1500, check_every=10, constraint=c)
    validate(chunk * depth + text, schema)


def test_schema_too_deep(vocab):
    def nested(n):
        s = {"type": "integer"}
        for _ in range(n):
            s = {"type": "object", "properties": {"x": s}, "required": ["x"]}
        return s

    with pytest.raises(ValueError, match="nests deeper"):
        JsonConstraint(vocab, nested(63))  # root + 63 objects + the integer: 65 frames
    c = JsonConstraint(vocab, nested(62))
    c.accept_text('{"x":' * 62 + "1" + "}" * 62)
    assert c.done


def test_mask_shapes(vocab):
    c = JsonConstraint(vocab, None)
    with pytest.raises(TypeError):
        c.mask_logits(np.zeros(vocab.n_vocab, np.float64))
    with pytest.raises(ValueError):
        c.mask_logits(np.zeros(10, np.float32))
    big = np.zeros(vocab.n_vocab + 64, np.float32)  # padded head: the extra ids are masked
    c.mask_logits(big)
    assert not np.isfinite(big[vocab.n_vocab:]).any() and np.isfinite(big).sum() > 0


def test_end_to_end_real_model():
    m = unigemma.Model(n_ctx=512)
    vocab = token_vocab(m.tokenizer)
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 24}, "age": {"type": "integer"},
                       "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 3}},
        "required": ["name", "age", "hobbies"],
        "additionalProperties": False,
    }
    prompt = ("<start_of_turn>user\nDescribe a fictional person as JSON with the keys name, age and hobbies."
              "<end_of_turn>\n<start_of_turn>model\n")
    logits = m.prefill(m.tokenize(prompt))
    c = JsonConstraint(vocab, schema)
    eog = set(vocab.eog_ids)
    out = []
    for _ in range(300):
        logits = np.array(logits, dtype=np.float32)
        c.mask_logits(logits)
        t = int(np.argmax(logits))
        if t in eog:
            break
        c.accept(t)
        out.append(t)
        logits = m._ctx.eval(np.asarray([t], dtype=np.int32))[0]
    else:
        pytest.fail("no EOG within 300 tokens")
    text = b"".join(vocab.piece(t) for t in out).decode("utf-8")
    value = validate(text, schema)
    assert set(value) == {"name", "age", "hobbies"}
