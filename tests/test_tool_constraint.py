"""Forced Gemma 4 tool calls: the tool-call dialect of the JSON constraint
(unigemma.constrained.tool_call_constraint, csrc/runtime/tool_dialect.*) on the real Gemma 4
vocabulary of a tiny converted checkpoint. Random-logits generation for several parameter
schemas; the text must parse with tool_syntax.parse_tool_call, validate with jsonschema, list
keys in dictsort order, and go through Gemma4StreamParser as one tool call.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

jsonschema = pytest.importorskip("jsonschema")

from unigemma import _core  # noqa: E402
from unigemma.chat.stream import Gemma4StreamParser  # noqa: E402
from unigemma.chat.tool_syntax import STR, dictsorted, parse_tool_call  # noqa: E402
from unigemma.constrained import JsonConstraint, tool_call_constraint, token_vocab  # noqa: E402


@pytest.fixture(scope="module")
def tok(hf_ckpt, tmp_path_factory):
    from unigemma.convert import convert

    path = convert(hf_ckpt("default"), "f32", tmp_path_factory.mktemp("toolc") / "tiny", progress=False).text
    return _core.Tokenizer(_core.GGUFFile(str(path), True))


@pytest.fixture(scope="module")
def vocab(tok):
    return token_vocab(tok)


@pytest.fixture(scope="module")
def quote(tok):
    q = tok.find_token(STR)
    assert q >= 0
    return q


@pytest.fixture(scope="module")
def bias(vocab, quote):
    """Logit offsets that end random generation within a few dozen tokens: '}' and ']' get
    pushed up (more with every step), ',' a little, the string delimiter more with every token
    inside the string (there it competes with every other token)."""
    n = vocab.n_vocab
    close = np.zeros(n, np.float32)
    comma = np.zeros(n, np.float32)
    rx_close, rx_open = re.compile(rb"[}\]]"), re.compile(rb"[{\[]")
    for i in range(n):
        p = vocab.piece(i)
        if rx_open.search(p):
            continue
        if rx_close.search(p):
            close[i] = 1.0
        elif b"," in p:
            comma[i] = 1.0
    q = np.zeros(n, np.float32)
    q[quote] = 1.0
    return close, comma, q


def sample(logits: np.ndarray, rng: np.random.Generator) -> int:
    idx = np.flatnonzero(np.isfinite(logits))
    assert idx.size > 0, "the mask left no token"
    z = logits[idx]
    w = np.exp(z - z.max()).astype(np.float64)
    c = np.cumsum(w)
    return int(idx[min(int(np.searchsorted(c, rng.random() * c[-1], side="right")), idx.size - 1)])


def generate(tok, vocab, bias, params, seed, max_steps=300):
    """Random-logits generation until `done`; checks each sampled token was allowed and the
    mask agrees with is_allowed() on a few probes. Returns the text and the constraint."""
    c = tool_call_constraint(tok, params)
    rng = np.random.default_rng(seed)
    n = vocab.n_vocab
    base = rng.standard_normal(n).astype(np.float32) * 1.5
    close, comma, q = bias
    ids: list[int] = []
    in_string = -1  # tokens since a string opened, -1 outside strings (enum strings count too)
    for step in range(max_steps):
        if c.done:
            break
        logits = np.roll(base, int(rng.integers(n))) + close * (1.0 + step / 8) + comma * 2.0
        if in_string >= 0:
            logits += q * (6.0 + 1.5 * in_string)
        c.mask_logits(logits)
        ok = np.isfinite(logits)
        if step % 4 == 0:
            for t in np.concatenate([rng.integers(0, n, 4), rng.choice(np.flatnonzero(close), 4), np.flatnonzero(q)]):
                assert c.is_allowed(int(t)) == bool(ok[t]), (step, int(t), vocab.piece(int(t)))
        t = sample(logits, rng)
        assert ok[t] and t not in vocab.eog_ids
        c.accept(t)  # raises ValueError if not allowed
        ids.append(t)
        in_string = (0 if in_string < 0 else -1) if q[t] else (in_string + 1 if in_string >= 0 else -1)
    else:
        pytest.fail(f"not done within {max_steps} tokens: {tok.decode(ids, True)[:300]!r}")
    # after the object closed nothing but EOG is allowed (the caller appends <tool_call|>)
    assert set(np.flatnonzero(c.allowed_tokens())) <= set(vocab.eog_ids)
    text = tok.decode(ids, True)
    assert text == b"".join(tok.token_to_piece(t, True) for t in ids).decode("utf-8")  # valid UTF-8
    return text, c


def assert_dictsorted(v):
    if isinstance(v, dict):
        assert list(v) == [k for k, _ in dictsorted(v)]
        for x in v.values():
            assert_dictsorted(x)
    elif isinstance(v, list):
        for x in v:
            assert_dictsorted(x)


SCHEMAS = {
    "weather": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "city"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "Days": {"type": "integer"},
        },
        "required": ["location", "Days"],
    },
    "scalars": {
        "type": "object",
        "properties": {
            "s": {"type": "string", "minLength": 2, "maxLength": 6},
            "n": {"type": "number"},
            "i": {"type": "integer"},
            "b": {"type": "boolean"},
            "z": {"type": "null"},
            "e": {"enum": ["a b", 'q"uote', "x\\y", 3, None, True]},
            "c": {"const": {"k": [1, "v"], "J": None}},
        },
        "required": ["s", "n", "i", "b", "z", "e", "c"],
        "additionalProperties": False,
    },
    "nested": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": 12}, "Age": {"type": "integer"},
                               "email": {"type": ["string", "null"], "maxLength": 20}},
                "required": ["name"],
            },
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "minItems": 1, "maxItems": 3},
            "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
                       "maxItems": 2},
        },
        "required": ["user", "tags"],
    },
    "optional_only": {
        "type": "object",
        "properties": {"b": {"type": "boolean"}, "A": {"type": "integer"}, "a": {"type": "string", "maxLength": 5}},
    },
    "anyof_ref": {
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                            "required": ["x", "y"]}},
        "type": "object",
        "properties": {
            "target": {"anyOf": [{"$ref": "#/$defs/Point"}, {"type": "string", "maxLength": 10},
                                 {"type": "null"}]},
            "mode": {"oneOf": [{"const": "fast"}, {"type": "integer"}]},
            "path": {"type": "array", "items": {"$ref": "#/$defs/Point"}, "maxItems": 2},
        },
        "required": ["target", "mode"],
    },
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_random_calls_parse_and_validate(tok, vocab, bias, name):
    schema = SCHEMAS[name]
    bodies = set()
    for seed in range(3):
        text, c = generate(tok, vocab, bias, schema, seed)
        assert text.startswith("{") and text.endswith("}")
        assert not any(re.search(r"\s", part) for part in text.split(STR)[::2])  # no whitespace outside strings
        fname, args = parse_tool_call("call:my_tool" + text)
        assert fname == "my_tool"
        jsonschema.Draft202012Validator(schema).validate(args)
        assert_dictsorted(args)
        bodies.add(text)

        # the whole call through the stream parser, token-sized pieces and all at once
        call = "<|tool_call>call:my_tool" + text + "<tool_call|>"
        for pieces in ([call], [call[i:i + 3] for i in range(0, len(call), 3)]):
            p = Gemma4StreamParser()
            events = [e for piece in pieces for e in p.feed(piece)] + p.flush()
            assert events == [("tool_call", {"name": "my_tool", "arguments": args})]
    assert len(bodies) > 1  # the random logits do explore


@pytest.mark.parametrize("params", [None, {"type": "object"}, {"type": "object", "properties": {}},
                                    {"type": "object", "additionalProperties": {"type": "string"}},
                                    {"type": "object", "description": "no arguments"}])
def test_no_parameters_only_empty_object(tok, vocab, params):
    c = tool_call_constraint(tok, params)
    first = {vocab.piece(int(i)) for i in np.flatnonzero(c.allowed_tokens())}
    assert first and all(p.startswith(b"{") for p in first)
    c.accept_text("{")
    assert {vocab.piece(int(i)) for i in np.flatnonzero(c.allowed_tokens())} == {b"}"}
    c.accept_text("}")
    assert c.done
    for bad in ["{a:1}", '{"a":1}', "{ }"]:
        with pytest.raises(ValueError):
            tool_call_constraint(tok, params).accept_text(bad)


def test_dialect_rules(tok, vocab, quote):
    schema = {"type": "object",
              "properties": {"b": {"type": "string"}, "A": {"type": "string", "maxLength": 3}, "a": {"type": "integer"}},
              "required": ["b"]}
    c = tool_call_constraint(tok, schema)
    for bad in ['{"A":', "{ A:", "{A:" + STR + "x" + STR + "}", "{a:1,A:", "{b:" + STR + STR + ",a:"]:
        # quoted key, whitespace, required b missing, order (A before a: a tie, declaration order), order
        with pytest.raises(ValueError):
            tool_call_constraint(tok, schema).accept_text(bad)
    c.accept_text("{A:")
    assert [int(i) for i in np.flatnonzero(c.allowed_tokens())] == [quote]  # a string opens
    c.accept_text(STR + "é€😀")  # three code points: maxLength reached
    allowed = c.allowed_tokens()
    assert allowed[quote] and allowed.sum() == 1
    c.accept_text(STR + ",a:-12,b:" + STR)
    # raw content: quotes, backslashes, newlines, braces and partial delimiters, no escapes
    c.accept_text('say "hi"\\n\n{x:1}<|"| <|"|')
    assert not c._m.accept_bytes(b'>')  # would complete the delimiter's text: "<|\"|" + ">"
    assert not c._m.accept_bytes(b'<|"|>')  # the delimiter spelled with ordinary tokens
    c.accept_text(STR)
    assert not c.done
    c.accept_text("}")
    assert c.done
    name, args = parse_tool_call("call:f" + STR.join(["{A:", "é€😀", ",a:-12,b:", 'say "hi"\\n\n{x:1}<|"| <|"|', "}"]))
    assert args == {"A": "é€😀", "a": -12, "b": 'say "hi"\\n\n{x:1}<|"| <|"|'}


def test_delimiter_only_in_tool_dialect(tok, vocab, quote):
    assert vocab.delimiter_id == quote and vocab.piece(quote) == b"\xff"
    # JSON mode never allows the delimiter token, also where a string opens
    c = JsonConstraint(vocab, {"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]})
    c.accept_text('{"s": ')
    allowed = c.allowed_tokens()
    assert not allowed[quote] and allowed.sum() > 0
    c.accept_text('"')
    assert not c.allowed_tokens()[quote]
    # tool mode: it is the only way to open a string
    t = tool_call_constraint(tok, {"type": "object", "properties": {"s": {"type": "string"}}})
    t.accept_text("{s:")
    assert [int(i) for i in np.flatnonzero(t.allowed_tokens())] == [quote]


def test_enum_strings_in_dialect_form(tok):
    schema = {"type": "object", "properties": {"e": {"enum": ["x y", 'a"b', 7, "has <|\"|> inside"]}},
              "required": ["e"]}
    c = tool_call_constraint(tok, schema)
    c.accept_text("{e:" + STR + 'a"b' + STR + "}")
    assert c.done
    bad = tool_call_constraint(tok, schema)
    with pytest.raises(ValueError):
        bad.accept_text('{e:"x y"}')  # JSON spelling
    with pytest.raises(ValueError):  # not writable in the dialect: left out of the enum
        tool_call_constraint(tok, schema).accept_text("{e:" + STR + "has <|")


@pytest.mark.parametrize("params, needle", [
    ({"type": "object", "properties": {"a": {"type": "string", "pattern": "x+"}}}, "'pattern'"),
    ({"type": "object", "properties": {"n": {"type": "number", "minimum": 0}}}, "'minimum'"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "patternProperties": {}}, "'patternProperties'"),
    ({"type": "string"}, "must describe an object"),
    ({"type": "array"}, "must describe an object"),
    ({"type": "object", "properties": {"a:b": {"type": "string"}}}, "bare key"),
    ({"type": "object", "properties": {" a": {"type": "string"}}}, "bare key"),
    ({"type": "object", "properties": {"": {"type": "string"}}}, "bare key"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b,c"]}, "bare key"),
])
def test_unsupported_schemas(tok, params, needle):
    with pytest.raises(ValueError, match=r"\[tool_schema\]") as e:
        tool_call_constraint(tok, params)
    assert needle in str(e.value)
    assert isinstance(e.value, _core.InputError)


def test_union_root_keeps_objects(tok):
    c = tool_call_constraint(tok, {"anyOf": [{"type": "object", "properties": {"q": {"type": "integer"}},
                                              "required": ["q"]}, {"type": "string"}]})
    with pytest.raises(ValueError):
        tool_call_constraint(tok, {"anyOf": [{"type": "object"}, {"type": "string"}]}).accept_text(STR)
    c.accept_text("{q:5}")
    assert c.done


def test_vocab_without_delimiter():
    v = _core.TokenVocab([b"{", b"}", b"a", b":", b"\xff"], [True] * 5, [])
    assert v.delimiter_id == -1 and v.is_usable(4)
    with pytest.raises(ValueError, match="no <"):
        JsonConstraint(v, {"type": "object"}, dialect="gemma4_tool")
    # with one: other tokens holding 0xFF are left out, the delimiter is the byte 0xFF
    v = _core.TokenVocab([b"{", b"}", b"a", b":", b"\xff", b"<|\"|>", b"x\xff"], [True] * 5 + [False, True], [],
                         delimiter_id=5)
    assert v.delimiter_id == 5 and v.is_usable(5) and not v.is_usable(4) and not v.is_usable(6)
    c = JsonConstraint(v, {"type": "object", "properties": {"a": {"type": "string"}}}, dialect="gemma4_tool")
    for t in [0, 2, 3, 5, 2, 5, 1]:  # {a:<|"|>a<|"|>}
        c.accept(t)
    assert c.done


def test_mask_matches_byte_stepping_on_synthetic_vocab():
    """The mask's shortcuts (raw-content subtrees taken whole, the partial-delimiter check,
    maxLength by character counts) agree with stepping every token byte by byte."""
    words = [b"{", b"}", b"[", b"]", b",", b":", b"a", b"ab", b"b", b"a:", b"ab:", b"B", b"1", b"-", b"12", b"0",
             b"true", b"null", b"x", b"xy", b"<", b"<|", b'<|"', b'<|"|', b'<|"|>', b'"|>', b"|>", b">", b">x",
             b'|"|>', b'"', b"\\", b"\n", b" ", b"\xc3", b"\xa9", b"\xc3\xa9", b"\xc3\xa9\xc3\xa9\xc3\xa9",
             b"\xe2\x82\xac", b"\xe2\x82", b"\xf0\x9f\x98\x80", b"<x", b"x<|", b"x<|\"|>y", b"abc" * 3, b"\xff"]
    pieces = [b"<eos>", b"<|\"|>"] + words
    v = _core.TokenVocab(pieces, [False, False] + [True] * len(words), [0], delimiter_id=1)
    schema = {"type": "object",
              "properties": {"B": {"type": "string", "maxLength": 6}, "a": {"type": "integer"},
                             "ab": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                             "b": {"anyOf": [{"type": "string"}, {"enum": ["x<|", 1]}]}},
              "required": ["b"]}
    prefixes = ["", "{", "{a", "{a:", "{a:1", "{a:12,", "{B:", "{B:" + STR, "{B:" + STR + "xy", "{B:" + STR + "é€",
                "{B:" + STR + "x<", "{B:" + STR + "x<|", "{B:" + STR + 'x<|"', "{B:" + STR + 'x<|"|', "{ab:[",
                "{ab:[" + STR + "x" + STR, "{b:", "{b:" + STR, "{b:" + STR + "x<|", "{b:" + STR + "x<|" + STR,
                "{b:1", "{b:1}"]
    for prefix in prefixes:
        c = JsonConstraint(v, schema, dialect="gemma4_tool")
        c.accept_text(prefix)
        got = c.allowed_tokens()
        want = np.array([c.is_allowed(i) for i in range(v.n_vocab)])
        assert (got == want).all(), (prefix, [pieces[i] for i in np.flatnonzero(got != want)])
        assert got.any(), prefix


def test_tool_choice_required_names_one_function_then_its_arguments(tok, vocab):
    """ToolChoiceConstraint (tool_choice "required" with several tools): random logits spell one
    of the names -- also where one name is a prefix of another -- then arguments that validate
    against that function's schema; the whole text parses as one call."""
    import jsonschema

    from unigemma.constrained import ToolChoiceConstraint

    funcs = {"get": {"type": "object", "properties": {"q": {"type": "boolean"}}, "required": ["q"]},
             "get_weather": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}},
                             "required": ["city"]},
             "Forecast": None}
    n = vocab.n_vocab
    seen = set()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        c = ToolChoiceConstraint(tok, funcs)
        ids = []
        for _ in range(200):
            if c.done:
                break
            logits = rng.standard_normal(n).astype(np.float32) * 3.0
            c.mask_logits(logits)
            t = sample(logits, rng)
            c.accept(t)
            ids.append(t)
        assert c.done, tok.decode(ids, True)
        name, args = parse_tool_call("call:" + tok.decode(ids, True))
        assert name == c.name and name in funcs
        jsonschema.validate(args, funcs[name] or {"type": "object", "maxProperties": 0})
        seen.add(name)
    assert len(seen) >= 2  # the random walk reaches more than one function
    with pytest.raises(ValueError):
        ToolChoiceConstraint(tok, {})
    with pytest.raises(ValueError, match="pattern"):
        ToolChoiceConstraint(tok, {"f": {"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}}})
