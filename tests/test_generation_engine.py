"""The one generation engine (python/unigemma/generation/): the server's output for a request
equals the library's (`Model.chat` / `Model.generate`) for the same SamplingParams, and the
features that used to be server-only (response_format, logprobs, tool_choice) work in the
library.

Oracles, besides "server == library": an independent argmax loop on a fresh `_core.Context`
(greedy tokens), a numpy float64 log-softmax of teacher-forced `Model.logits` (logprobs), the
`jsonschema` package (constrained output) and the tool schemas. The model is the tiny random
Gemma 4 in F32 (its logits do not depend on the batch a token is evaluated in beyond float
rounding), with its MTP drafter for the speculative cases.
"""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import unigemma
from unigemma import SamplingParams, _core
from unigemma.chat_format import stop_token_ids

from test_server import LiveServer

jsonschema = pytest.importorskip("jsonschema")

SAMPLINGS = [{"temperature": 0.0}, {"temperature": 1.0, "top_p": 0.9, "seed": 1234}]
PROMPTS = ["Hello", "Tell me a long story about the sea and the wind"]
N = 24

FORECAST = {"type": "object", "required": ["city", "days"],
            "properties": {"city": {"type": "string", "maxLength": 12}, "days": {"type": "integer"},
                           "unit": {"enum": ["C", "F"]}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
             "type": "object", "properties": {"city": {"type": "string", "maxLength": 10}}, "required": ["city"]}}},
         {"type": "function", "function": {"name": "forecast", "parameters": FORECAST}}]
# bounded: strings have a maximum length and the matcher allows at most 16 whitespace bytes per
# gap (about 14 gaps here), so the value completes within JSON_BUDGET tokens even under random
# weights
ITEM = {"type": "object", "additionalProperties": False, "required": ["name", "ok", "size"],
        "properties": {"name": {"type": "string", "maxLength": 8}, "ok": {"type": "boolean"},
                       "size": {"enum": ["S", "M", "L"]}}}
JSON_BUDGET = 400
RF = {"type": "json_schema", "json_schema": {"name": "item", "schema": ITEM}}


@pytest.fixture(scope="module")
def files(hf_ckpt, tmp_path_factory):
    from unigemma.convert import convert

    prefix = tmp_path_factory.mktemp("engine") / "tiny"
    res = convert(hf_ckpt("default"), "f32", prefix, assistant_dir=hf_ckpt("assistant_default"), progress=False)
    return str(res.text), str(res.text)[:-len(".gguf")] + "-assistant.gguf"


@pytest.fixture(scope="module")
def lib(files):
    return unigemma.Model(files[0], n_ctx=512)


@pytest.fixture(scope="module")
def lib_draft(files):
    return unigemma.Model(files[0], n_ctx=512, draft=files[1])


@pytest.fixture(scope="module")
def srv(files):
    s = LiveServer(model_path=files[0], n_ctx=512, parallel=2)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def srv_draft(files):
    s = LiveServer(model_path=files[0], n_ctx=512, parallel=2, draft=files[1])
    yield s
    s.stop()


def user(text):
    return [{"role": "user", "content": text}]


def argmax_loop(model, ids, n, stop):
    """Independent greedy decoding: a fresh core Context, one token at a time, argmax."""
    ctx = _core.Context(model.text_model, n_ctx=len(ids) + n)
    row = ctx.eval(np.asarray(ids, np.int32))[0]
    out = []
    for _ in range(n):
        t = int(np.argmax(row))
        if t in stop:
            break
        out.append(t)
        row = ctx.eval(np.asarray([t], np.int32))[0]
    return out


def chat_stop_ids(model):
    tok = model.tokenizer
    return set(tok.eog_ids) | set(stop_token_ids("gemma4", tok.find_token, tok.eos))


def ref_logprobs(model, ids, tokens):
    """float64 log-softmax rows of the teacher-forced logits after prompt + tokens[:i]."""
    x = model.logits(list(ids) + list(tokens)).astype(np.float64)[len(ids) - 1:len(ids) - 1 + len(tokens)]
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def piece(model, t):
    return model.tokenizer.token_to_piece(int(t), special=True).decode("utf-8", errors="replace")


# -- server == library ----------------------------------------------------------------------------
@pytest.mark.parametrize("drafted", [False, True], ids=["plain", "drafter"])
@pytest.mark.parametrize("kw", SAMPLINGS, ids=["greedy", "seeded"])
def test_chat_server_equals_library(request, drafted, kw):
    m = request.getfixturevalue("lib_draft" if drafted else "lib")
    s = request.getfixturevalue("srv_draft" if drafted else "srv")
    params = SamplingParams(max_tokens=N, **kw)
    drafted0 = s.state.engine.stats["drafted"]
    for prompt in PROMPTS:
        m.reset()
        want = m.chat(user(prompt), params=params)
        r = s.client().chat.completions.create(model="m", messages=user(prompt), max_tokens=N, **kw)
        ch = r.choices[0]
        assert ch.message.content == want.content
        assert r.usage.completion_tokens == len(want.tokens) and r.usage.prompt_tokens == want.stats["prompt_tokens"]
        assert ch.finish_reason == want.finish_reason in ("stop", "length")
        if kw["temperature"] == 0:
            ids = m.prepare_chat(user(prompt)).prompt.ids
            assert want.tokens == argmax_loop(m, ids, N, chat_stop_ids(m))
        if drafted:
            assert want.stats["drafted"] > 0
    if drafted:
        assert s.state.engine.stats["drafted"] > drafted0  # the server's requests ran speculative rounds
    if kw["temperature"] > 0:  # the seed matters: another seed gives another reply (random weights)
        other = m.chat(user(PROMPTS[1]), params=SamplingParams(max_tokens=N, **{**kw, "seed": 99}))
        assert other.tokens != want.tokens


@pytest.mark.parametrize("kw", SAMPLINGS, ids=["greedy", "seeded"])
def test_completion_server_equals_library(lib, srv, kw):
    prompt = "The quick brown fox"
    lib.reset()
    want = lib.generate(prompt, SamplingParams(max_tokens=N, stop_tokens=[], **kw))
    r = srv.client().completions.create(model="m", prompt=prompt, max_tokens=N, extra_body={"ignore_eos": True},
                                        **kw)
    assert r.choices[0].text == want.text and r.usage.completion_tokens == len(want.tokens) == N
    assert r.choices[0].finish_reason == want.finish_reason == "length"


@pytest.mark.parametrize("kw", SAMPLINGS, ids=["greedy", "seeded"])
def test_logprobs_server_equals_library_and_an_independent_softmax(lib, srv, kw):
    k = 3
    lib.reset()
    want = lib.chat(user(PROMPTS[1]), max_tokens=12, logprobs=True, top_logprobs=k, **kw)
    assert want.logprobs is not None and [e.id for e in want.logprobs] == want.tokens
    ids = lib.prepare_chat(user(PROMPTS[1])).prompt.ids
    ref = ref_logprobs(lib, ids, want.tokens)
    for i, e in enumerate(want.logprobs):
        assert abs(e.logprob - ref[i, e.id]) < 1e-4
        order = np.argsort(-ref[i], kind="stable")[:k]
        assert [t for t, _ in e.top_logprobs] == order.tolist()
        assert np.allclose([lp for _, lp in e.top_logprobs], ref[i, order], atol=1e-4)
        if kw["temperature"] == 0:
            assert e.id == order[0]
    r = srv.client().chat.completions.create(model="m", messages=user(PROMPTS[1]), max_tokens=12, logprobs=True,
                                             top_logprobs=k, **kw)
    got = r.choices[0].logprobs.content
    assert [g.token for g in got] == [piece(lib, t) for t in want.tokens]
    assert np.allclose([g.logprob for g in got], [e.logprob for e in want.logprobs], rtol=0, atol=1e-5)
    for g, e in zip(got, want.logprobs):
        assert [x.token for x in g.top_logprobs] == [piece(lib, t) for t, _ in e.top_logprobs]
        assert np.allclose([x.logprob for x in g.top_logprobs], [lp for _, lp in e.top_logprobs], atol=1e-5)
    # a stream carries the same token events, in order, before the text they produce
    lib.reset()
    s = lib.chat(user(PROMPTS[1]), max_tokens=12, logprobs=True, top_logprobs=k, stream=True, **kw)
    events = list(s)
    assert [v.id for kind, v in events if kind == "token"] == want.tokens
    assert "".join(v for kind, v in events if kind == "content") == want.content
    assert events[0][0] == "token"


@pytest.mark.parametrize("kw", SAMPLINGS, ids=["greedy", "seeded"])
def test_json_schema_server_equals_library_and_validates(lib, srv, kw):
    msgs = user("Describe an item as JSON.")
    lib.reset()
    want = lib.chat(msgs, max_tokens=JSON_BUDGET, response_format=RF, **kw)
    assert want.finish_reason == "stop", want.content
    jsonschema.validate(json.loads(want.content), ITEM)
    r = srv.client().chat.completions.create(model="m", messages=msgs, max_tokens=JSON_BUDGET, response_format=RF, **kw)
    assert r.choices[0].message.content == want.content and r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == len(want.tokens)
    # Model.generate with the same constraint, and the completions endpoint
    g = lib.generate("An item:", SamplingParams(max_tokens=JSON_BUDGET, response_format=RF, **kw))
    assert g.finish_reason == "stop"
    jsonschema.validate(json.loads(g.text), ITEM)
    c = srv.client().completions.create(model="m", prompt="An item:", max_tokens=JSON_BUDGET,
                                        extra_body={"response_format": RF}, **kw)
    assert c.choices[0].text == g.text
    o = lib.generate("An object:", max_tokens=JSON_BUDGET, response_format={"type": "json_object"}, **kw)
    if o.finish_reason == "stop":  # random weights may spend the budget inside a long string
        assert isinstance(json.loads(o.text), dict)
    else:
        assert o.finish_reason == "length" and len(o.tokens) == JSON_BUDGET


def test_engine_batch_rows_give_the_library_token_ids(lib, srv):
    """Requests decoded together (one decode_batch row each) give exactly the library's ids and
    logprobs: the scheduler is only a driver of the same SequenceState."""
    from unigemma.server.engine import EngineRequest

    eng = srv.state.engine
    cases = [(user("One"), SamplingParams(max_tokens=16, temperature=0.0, logprobs=True)),
             (user("Two, three"), SamplingParams(max_tokens=16, temperature=0.8, seed=5)),
             (user("Four five six"), SamplingParams(max_tokens=16, temperature=1.0, top_k=20, seed=6,
                                                    logprobs=True, top_logprobs=2))]
    done = [threading.Event() for _ in cases]
    reqs = []
    rows0 = eng.stats["decode_rows"], eng.stats["decode_steps"]
    for (msgs, p), ev in zip(cases, done):
        req = EngineRequest.from_prepared(srv.model.prepare_chat(msgs, params=p), 16, srv.model.hparams["n_embd"],
                                          sink=lambda e, ev=ev: ev.set() if e[0] in ("done", "error") else None)
        reqs.append(req)
    for req in reqs:
        eng.submit(req)
    for ev in done:
        assert ev.wait(120)
    assert eng.stats["decode_rows"] - rows0[0] > eng.stats["decode_steps"] - rows0[1]  # batched steps
    for req, (msgs, p) in zip(reqs, cases):
        lib.reset()
        want = lib.chat(msgs, params=p)
        assert req.tokens == want.tokens and req.state.finish_reason == want.finish_reason
        if p.logprobs:
            assert [e.id for e in req.state.logprobs] == want.tokens
            assert np.allclose([e.logprob for e in req.state.logprobs], [e.logprob for e in want.logprobs],
                               rtol=0, atol=1e-5)


def test_generate_logprobs_results_and_streams(lib):
    lib.reset()
    r = lib.generate("The quick brown fox", max_tokens=10, stop_tokens=[], logprobs=True, top_logprobs=1)
    assert [e.id for e in r.logprobs] == r.tokens and all(len(e.top_logprobs) == 1 for e in r.logprobs)
    ref = ref_logprobs(lib, lib.tokenize("The quick brown fox"), r.tokens)
    assert np.allclose([e.logprob for e in r.logprobs], ref.max(axis=1), atol=1e-4)  # greedy: the top token
    s = lib.generate("The quick brown fox", max_tokens=10, stop_tokens=[], logprobs=True, stream=True)
    events = list(s)
    assert {k for k, _ in events} == {"token", "text"} and all(isinstance(ev, unigemma.Event) for ev in events)
    assert [v.id for k, v in events if k == "token"] == r.tokens == s.result.tokens
    assert "".join(v for k, v in events if k == "text") == r.text == s.result.text
    plain = lib.generate("The quick brown fox", max_tokens=10, stop_tokens=[], stream=True)
    pieces = list(plain)
    assert all(isinstance(p, str) for p in pieces) and "".join(pieces) == r.text and plain.result.logprobs is None


# -- tool_choice in the library ---------------------------------------------------------------------
def test_forced_tool_choice_in_the_library_and_the_server(lib, srv):
    msgs = user("Forecast for Oslo?")
    named = {"type": "function", "function": {"name": "forecast"}}
    for kw in SAMPLINGS:
        lib.reset()
        r = lib.chat(msgs, tools=TOOLS, tool_choice=named, max_tokens=120, **kw)
        assert r.finish_reason == "tool_calls", r
        (call,) = r.tool_calls
        assert call["name"] == "forecast"
        jsonschema.validate(call["arguments"], FORECAST)
        s = srv.client().chat.completions.create(model="m", messages=msgs, tools=TOOLS, tool_choice=named,
                                                 max_tokens=120, **kw)
        (sc,) = s.choices[0].message.tool_calls
        assert s.choices[0].finish_reason == "tool_calls"
        assert (sc.function.name, json.loads(sc.function.arguments)) == (call["name"], call["arguments"])
        assert s.usage.completion_tokens == len(r.tokens)
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for seed in range(3):
        r = lib.chat(msgs, tools=TOOLS, tool_choice="required", max_tokens=120, temperature=1.0, seed=seed)
        (call,) = r.tool_calls
        assert r.finish_reason == "tool_calls"
        jsonschema.validate(call["arguments"], schemas[call["name"]])
    # "none": the tools are not offered (the prompt is the one without tools)
    lib.reset()
    none = lib.chat(msgs, tools=TOOLS, tool_choice="none", max_tokens=2)
    assert none.stats["prompt_tokens"] == len(lib.prepare_chat(msgs).prompt.ids) \
        < len(lib.prepare_chat(msgs, tools=TOOLS).prompt.ids)
    with pytest.raises(ValueError, match="not in tools"):
        lib.chat(msgs, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}})
    with pytest.raises(ValueError, match="response_format"):
        lib.chat(msgs, tools=TOOLS, tool_choice=named, response_format={"type": "json_object"})


# -- SamplingParams and the finish-reason vocabulary -------------------------------------------------------
def test_sampling_params_validation_and_keyword_equivalence(lib):
    p = SamplingParams()
    assert (p.max_tokens, p.temperature, p.top_k, p.top_p, p.min_p, p.penalty_last_n, p.seed) == \
        (None, 0.0, 0, 1.0, 0.0, 64, None)
    assert SamplingParams(stop="x").stop == ("x",) and SamplingParams(stop=["a", ""]).stop == ("a",)
    assert SamplingParams(response_format={"type": "text"}).response_format is None
    for bad in ({"top_p": 1.5}, {"top_k": -1}, {"temperature": float("nan")}, {"min_p": 2},
                {"top_logprobs": 2}, {"logprobs": True, "top_logprobs": 21}, {"stop": [1]},
                {"response_format": {"type": "yaml"}}, {"max_tokens": -1}, {"penalty_last_n": 1.5},
                {"logit_bias": [1]}, {"repetition_penalty": 0.0}):
        with pytest.raises(ValueError):
            SamplingParams(**bad)
    with pytest.raises(TypeError, match="tempreature"):
        lib.generate("Hi", tempreature=1.0)
    with pytest.raises(ValueError, match="response_format"):
        lib.generate("Hi", response_format={"type": "json_schema", "json_schema": {"schema": {
            "type": "string", "pattern": "a+"}}})
    kw = dict(max_tokens=10, temperature=0.9, top_k=30, seed=3, repetition_penalty=1.2)
    a = lib.generate("Hi there", **kw)
    b = lib.generate("Hi there", SamplingParams(**kw))
    c = lib.generate("Hi there", SamplingParams(max_tokens=10), temperature=0.9, top_k=30, seed=3,
                     repetition_penalty=1.2)
    assert a.tokens == b.tokens == c.tokens and len(a.tokens) == 10


def test_finish_reasons_use_one_vocabulary(lib):
    r = lib.generate("Hi", max_tokens=3, stop_tokens=[])
    assert r.finish_reason == "length"
    first = r.tokens[0]
    assert lib.generate("Hi", max_tokens=3, stop_tokens=[first]).finish_reason == "stop"
    text = lib.generate("Hi", max_tokens=8, stop_tokens=[]).text
    assert len(text) >= 5, text
    assert lib.generate("Hi", max_tokens=8, stop_tokens=[], stop=text[2:5]).finish_reason == "stop"
    assert unigemma.generation.FINISH_REASONS == ("stop", "length", "tool_calls", "cancelled")
    # a consumer that cancels a sequence: "cancelled", no more events
    prep = lib.prepare_generate("Hi", SamplingParams(max_tokens=5))
    st = prep.start(5)
    st.cancel()
    assert st.finished and st.finish_reason == "cancelled"
