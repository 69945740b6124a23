"""`unigemma serve` driven by the real `openai` client over loopback HTTP.

Servers run in-process (uvicorn in a thread) on 127.0.0.1. Oracles: the library path
(`Model.chat` / `Model.generate`, itself checked against transformers in test_api and
test_text_model), an independent numpy log-softmax of `Model.logits` for logprobs, the
`jsonschema` package for constrained output, and scripted token sequences (through the real
server path) for tool calls and thinking on the tiny random Gemma 4."""
from __future__ import annotations

import base64
import io
import json
import os
import socket
import threading
import time

import http.client as httpc
import numpy as np
import openai
import pytest
import uvicorn

import unigemma
import unigemma.chat_format
from unigemma import _core
from unigemma.server import build_server

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather of a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]


class Resp:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code, self.text = status, body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.text)


def http(method: str, url: str, body=None, headers=None, timeout: float = 60) -> Resp:
    """One raw HTTP request with the standard library (bytes or a JSON-able body)."""
    host, _, path = url[len("http://"):].partition("/")
    conn = httpc.HTTPConnection(host, timeout=timeout)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    conn.request(method, "/" + path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    r = conn.getresponse()
    out = Resp(r.status, r.read())
    conn.close()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving a build_server() app on a free loopback port, in a daemon thread.
    UNIGEMMA_TEST_DEVICE=gpu runs every server of this file on the WebGPU backend."""

    def __init__(self, **kw) -> None:
        kw.setdefault("device", os.environ.get("UNIGEMMA_TEST_DEVICE", "cpu"))
        self.state, app = build_server(**kw)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error",
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        t0 = time.time()
        while not self.server.started:
            assert time.time() - t0 < 30, "server did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"
        self.model = self.state.model

    def client(self, key: str = "none", **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=120, **kw)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.state.engine.close()


@pytest.fixture(scope="module")
def g3srv():
    s = LiveServer(n_ctx=512, parallel=3, max_body_bytes=1 << 20)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def g4files(hf_ckpt, tmp_path_factory):
    from unigemma.convert import convert

    prefix = tmp_path_factory.mktemp("srv") / "tiny"
    res = convert(hf_ckpt("default"), "f32", prefix, assistant_dir=hf_ckpt("assistant_default"), progress=False)
    return str(res.text), str(res.mmproj)


@pytest.fixture(scope="module")
def g4srv(g4files):
    text, mmproj = g4files
    s = LiveServer(model_path=text, mmproj=mmproj, n_ctx=1024, parallel=2, api_key="sekrit")
    yield s
    s.stop()


def script(monkeypatch, model, ids):
    """Every request's sampler returns ``ids`` in order (then the last one): scripted output
    through the real engine, decode and parser path."""
    class Scripted:
        def __init__(self):
            self.i = 0

        def sample(self, logits, history):
            assert np.isfinite(logits).any()
            t = ids[min(self.i, len(ids) - 1)]
            self.i += 1
            return t
    monkeypatch.setattr(model, "_sampler", lambda *a, **kw: (Scripted(), 0))


def chat(c, text, **kw):
    return c.chat.completions.create(model="m", messages=[{"role": "user", "content": text}], **kw)


# -- basics ----------------------------------------------------------------------------------------
def test_models_health_metrics(g3srv):
    c = g3srv.client()
    ms = c.models.list().data
    assert [m.id for m in ms] == ["gemma-3-270m-q4_k_m"]
    h = http("GET", g3srv.url + "/health").json()
    assert h["status"] == "ok" and h["slots_idle"] + h["slots_processing"] == 3
    text = http("GET", g3srv.url + "/metrics").text
    assert "# TYPE unigemma_completion_tokens_total counter" in text
    assert "unigemma_kv_cache_capacity_tokens 1536" in text  # 3 slots x 512


def test_chat_matches_the_library(g3srv):
    msgs = [{"role": "user", "content": "Name three colors."}]
    r = g3srv.client().chat.completions.create(model="m", messages=msgs, max_tokens=24, temperature=0)
    lib = unigemma.Model(n_ctx=512).chat(msgs, max_tokens=24, temperature=0)
    assert r.choices[0].message.content == lib.content and r.choices[0].message.role == "assistant"
    assert r.usage.prompt_tokens == lib.stats["prompt_tokens"]
    assert r.usage.completion_tokens == len(lib.tokens)
    assert r.choices[0].finish_reason == ("length" if lib.stats["finish_reason"] == "length" else "stop")


def test_streaming_equals_non_streaming(g3srv):
    c = g3srv.client()
    full = chat(c, "Write a short poem about the sea.", max_tokens=30, temperature=0)
    chunks = list(chat(c, "Write a short poem about the sea.", max_tokens=30, temperature=0, stream=True,
                       stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full.choices[0].message.content
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finals == [full.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert len({ch.id for ch in chunks}) == 1


def test_completions_and_logprobs_match_an_independent_softmax(g3srv):
    c = g3srv.client()
    prompt = "The capital of France is"
    r = c.completions.create(model="m", prompt=prompt, max_tokens=4, temperature=0, logprobs=3)
    m = g3srv.model
    ids = m.tokenize(prompt)
    lp = r.choices[0].logprobs
    assert len(lp.token_logprobs) == r.usage.completion_tokens == 4
    # teacher-forced logits of prompt + generated tokens, from a fresh context: log-softmax in float64
    gen = m.tokenize(r.choices[0].text, add_bos=False)
    logits = m.logits(ids + gen).astype(np.float64)
    for i in range(4):
        row = logits[len(ids) - 1 + i]
        ref = row - row.max() - np.log(np.exp(row - row.max()).sum())
        assert abs(lp.token_logprobs[i] - ref[gen[i]]) < 0.05  # q8 activations: decode vs batch rows differ slightly
        top = sorted(lp.top_logprobs[i].values(), reverse=True)
        assert np.allclose(top, np.sort(ref)[::-1][:3], atol=0.05)
    rc = chat(c, "Hi", max_tokens=3, temperature=0, logprobs=True, top_logprobs=2)
    e = rc.choices[0].logprobs.content
    assert len(e) == 3 and all(len(x.top_logprobs) == 2 and x.top_logprobs[0].logprob >= x.logprob - 1e-9 for x in e)


def test_stop_sequences(g3srv):
    c = g3srv.client()
    base = chat(c, "List the days of the week.", max_tokens=40, temperature=0).choices[0].message.content
    words = [w for w in base.split() if len(w) > 3]
    assert words, base
    stop = words[len(words) // 2]
    r = chat(c, "List the days of the week.", max_tokens=40, temperature=0, stop=[stop, "zzzz"])
    out = r.choices[0].message.content
    assert out == base[:base.index(stop)] and r.choices[0].finish_reason == "stop"
    s = "".join(ch.choices[0].delta.content or "" for ch in
                chat(c, "List the days of the week.", max_tokens=40, temperature=0, stop=stop, stream=True)
                if ch.choices)
    assert s == out


def test_seed_reproducible_under_concurrency(g3srv):
    c = g3srv.client()

    def sampled(seed):
        return chat(c, "Tell me a story.", max_tokens=20, temperature=1.0, top_p=0.95, seed=seed).choices[0].message.content
    alone = sampled(1234)
    out = {}

    def worker(k, seed):
        out[k] = sampled(seed)
    ts = [threading.Thread(target=worker, args=(k, s)) for k, s in enumerate([1234, 99, 1234, 7])]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert out[0] == out[2] == alone
    assert len({out[0], out[1], out[3]}) > 1


def test_continuous_batching_matches_one_at_a_time(g3srv):
    """Concurrent greedy requests are decoded in shared batches and give what they give alone."""
    c = g3srv.client()
    prompts = ["Count from one to ten.", "What is the sun?", "Say something about cats and dogs."]
    alone = [chat(c, p, max_tokens=32, temperature=0).choices[0].message.content for p in prompts]
    st = g3srv.state.engine.stats
    steps0, rows0 = st["decode_steps"], st["decode_rows"]
    got = [None] * 3
    ts = [threading.Thread(target=lambda i=i: got.__setitem__(
        i, chat(c, prompts[i], max_tokens=32, temperature=0).choices[0].message.content)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert got == alone
    steps, rows = st["decode_steps"] - steps0, st["decode_rows"] - rows0
    assert rows > steps  # some decode steps carried more than one sequence


def test_prefix_reuse_across_turns(g3srv):
    c = g3srv.client()
    msgs = [{"role": "user", "content": "Tell me about the moon in one sentence."}]
    r1 = c.chat.completions.create(model="m", messages=msgs, max_tokens=16, temperature=0)
    msgs += [{"role": "assistant", "content": r1.choices[0].message.content},
             {"role": "user", "content": "And the sun?"}]
    r2 = c.chat.completions.create(model="m", messages=msgs, max_tokens=8, temperature=0)
    assert r2.usage.prompt_tokens_details.cached_tokens > r1.usage.prompt_tokens // 2


def test_disconnect_cancels_generation(g3srv):
    eng = g3srv.state.engine
    before = eng.stats["cancelled"]
    conn = httpc.HTTPConnection(f"127.0.0.1:{g3srv.port}", timeout=60)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(
        {"messages": [{"role": "user", "content": "Write a long essay."}], "stream": True, "max_tokens": 400,
         "temperature": 0}).encode(), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    n = 0
    while n < 3:
        n += r.readline().startswith(b"data: ")
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    t0 = time.time()
    while eng.stats["cancelled"] == before:
        assert time.time() - t0 < 20, "generation not cancelled after the client left"
        time.sleep(0.05)
    assert eng.snapshot()["slots_busy"] == 0 or time.time() - t0 < 20


def test_disconnect_cancels_a_non_streaming_request(g3srv):
    eng = g3srv.state.engine
    before, done_before = eng.stats["cancelled"], eng.stats["finish_length"]
    body = json.dumps({"messages": [{"role": "user", "content": "Write a long essay."}], "max_tokens": 450,
                       "temperature": 0, "ignore_eos": True}).encode()
    sock = socket.create_connection(("127.0.0.1", g3srv.port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    t0 = time.time()
    while eng.snapshot()["slots_busy"] == 0:
        assert time.time() - t0 < 20
        time.sleep(0.02)
    sock.close()  # gone before the answer
    while eng.stats["cancelled"] == before:
        assert time.time() - t0 < 20, "generation not cancelled after the client left"
        time.sleep(0.05)
    assert eng.stats["finish_length"] == done_before  # it did not run to max_tokens


# -- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, status, needle", [
    (b"{not json", 400, "malformed JSON"),
    (b"[1, 2]", 400, "must be an object"),
    ({"messages": []}, 400, "non-empty list"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}, 400, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10 ** 30}, 400, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 1e308}, 400, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 3}, 400, "logprobs"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 3}, 400, "'n'"),
    ({"messages": [{"role": "user", "content": "hi"}], "seed": "x"}, 400, "seed"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": [1, 2]}, 400, "stop"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "role"),
    ({"messages": [{"role": "user", "content": [{"type": "video_url"}]}]}, 400, "content part"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/png;base64,@@@notbase64"}}]}]}, 400, "base64"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "https://example.com/cat.png"}}]}]}, 400, "not fetched"),
    ({"messages": [{"role": "user", "content": "word " * 2000}]}, 400, "context"),
    ({"prompt": ""}, 400, "empty"),
])
def test_bad_requests_get_4xx_with_a_message(g3srv, body, status, needle):
    path = "/v1/completions" if isinstance(body, dict) and "prompt" in body else "/v1/chat/completions"
    r = http("POST", g3srv.url + path, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle.lower() in err["message"].lower() and err["type"] == "invalid_request_error"


def test_oversized_body_413_and_tools_on_gemma3(g3srv):
    r = http("POST", g3srv.url + "/v1/chat/completions", b"x" * (2 << 20))
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="tools"):
        chat(g3srv.client(), "hi", tools=TOOLS)
    assert http("GET", g3srv.url + "/health").json()["status"] == "ok"


def test_queue_full_gives_429_with_retry_after():
    m = unigemma.Model(n_ctx=256)
    from unigemma.server.app import ServerState, create_app  # noqa: F401
    from unigemma.server.engine import Engine, EngineRequest, QueueFullError

    eng = Engine(m, n_parallel=1, n_ctx=256, max_queue=1)
    try:
        def req():
            prep = m.prepare_generate([2, 100], unigemma.SamplingParams(stop_tokens=[]))
            return EngineRequest.from_prepared(prep, 50, m.hparams["n_embd"], sink=lambda ev: None)
        eng.submit(req())
        t0 = time.time()
        while eng.snapshot()["slots_busy"] == 0:
            assert time.time() - t0 < 10
            time.sleep(0.01)
        eng.submit(req())  # waits in the queue
        with pytest.raises(QueueFullError):
            eng.submit(req())
    finally:
        eng.close()


# -- Gemma 4: tools, thinking, media, API key ----------------------------------------------------------
def test_api_key_required(g4srv):
    r = http("GET", g4srv.url + "/v1/models")
    assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    with pytest.raises(openai.AuthenticationError):
        chat(g4srv.client("wrong"), "hi", max_tokens=2)
    assert g4srv.client("sekrit").models.list().data[0].meta["vision"] is True


def test_tool_call_round_trip(g4srv, monkeypatch):
    m = g4srv.model
    c = g4srv.client("sekrit")
    call = m.tokenize('<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|><|tool_response>', add_bos=False)
    script(monkeypatch, m, call)
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    r = c.chat.completions.create(model="m", messages=msgs, tools=TOOLS)
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls" and ch.message.content is None
    tc = ch.message.tool_calls
    assert len(tc) == 1 and tc[0].type == "function" and tc[0].function.name == "get_weather"
    assert json.loads(tc[0].function.arguments) == {"city": "Paris"}
    # streamed: the same call as one tool_calls delta
    deltas = [d for x in c.chat.completions.create(model="m", messages=msgs, tools=TOOLS, stream=True)
              for d in ([x.choices[0].delta] if x.choices else [])]
    calls = [t for d in deltas for t in (d.tool_calls or [])]
    assert [(t.index, t.function.name, json.loads(t.function.arguments)) for t in calls] == \
        [(0, "get_weather", {"city": "Paris"})]
    # the tool result goes back; the answer follows
    script(monkeypatch, m, m.tokenize("Sunny.<turn|>", add_bos=False))
    msgs += [ch.message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": tc[0].id, "content": '{"sky": "sunny"}'}]
    r2 = c.chat.completions.create(model="m", messages=msgs, tools=TOOLS)
    assert r2.choices[0].message.content == "Sunny." and r2.choices[0].finish_reason == "stop"
    assert r2.usage.prompt_tokens_details.cached_tokens > 0
    expect = m.tokenize(unigemma.chat_format.render_gemma4(
        [msgs[0], {"role": "assistant", "content": None, "tool_calls": [
            {"id": tc[0].id, "type": "function", "function": {"name": "get_weather",
                                                              "arguments": tc[0].function.arguments}}]},
         msgs[2]], tools=TOOLS))
    assert r2.usage.prompt_tokens == len(expect)


def test_thinking_is_returned_separately(g4srv, monkeypatch):
    m = g4srv.model
    script(monkeypatch, m, m.tokenize("<|channel>thought\nLet me think.<channel|>It is 4.<turn|>", add_bos=False))
    c = g4srv.client("sekrit")
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "2+2?"}],
                                  extra_body={"chat_template_kwargs": {"enable_thinking": True}})
    msg = r.choices[0].message
    assert msg.content == "It is 4." and msg.model_extra["reasoning_content"] == "Let me think."
    parts = [x.choices[0].delta for x in c.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "2+2?"}], reasoning_effort="high", stream=True) if x.choices]
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in parts) == "Let me think."
    assert "".join(d.content or "" for d in parts) == "It is 4."


def _png(seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _wav(seed: int) -> bytes:
    import soundfile

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    soundfile.write(buf, (0.2 * rng.standard_normal(8000)).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


def test_image_and_audio_content(g4srv, tmp_path):
    m = g4srv.model
    c = g4srv.client("sekrit")
    png, wav = _png(1), _wav(2)
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    content = [{"type": "text", "text": "Describe:"}, {"type": "image_url", "image_url": {"url": url}},
               {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"}}]
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": content}], max_tokens=3,
                                  temperature=0)
    # the library builds the same multimodal prompt: same token count (soft tokens included)
    lib = m._media_prompt(unigemma.chat_format.render_gemma4(
        [{"role": "user", "content": [{"type": "text", "text": "Describe:"}, {"type": "image", "image": png},
                                      {"type": "audio", "audio": wav}]}], add_generation_prompt=True),
        [("image", png), ("audio", wav)], add_bos=True)
    assert r.usage.prompt_tokens == len(lib.ids) > 100
    assert int((lib.kinds == 1).sum()) > 0 and int((lib.kinds == 2).sum()) > 0
    # a local file path gives the same prompt as the data URL
    p = tmp_path / "x.png"
    p.write_bytes(png)
    r2 = c.chat.completions.create(model="m", max_tokens=3, temperature=0, messages=[{"role": "user", "content": [
        {"type": "text", "text": "Describe:"}, {"type": "image_url", "image_url": {"url": f"file://{p}"}},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"}}]}])
    assert r2.usage.prompt_tokens == r.usage.prompt_tokens
    assert r2.choices[0].message.content == r.choices[0].message.content
    # corrupt media: 400 naming the problem; the server stays up
    bad = "data:image/png;base64," + base64.b64encode(b"\x89PNG garbage").decode()
    with pytest.raises(openai.BadRequestError, match="media"):
        c.chat.completions.create(model="m", max_tokens=2, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": bad}}]}])
    assert chat(c, "still alive?", max_tokens=2).choices[0].finish_reason in ("length", "stop")


def test_speculative_serving_keeps_greedy_output(g4files):
    """With the MTP drafter a lone request is drafted and verified; greedy output is unchanged
    (oracle: the same server build without a drafter) and so is seeded sampling's support."""
    text, _ = g4files
    plain = LiveServer(model_path=text, n_ctx=512, parallel=2)
    drafted = LiveServer(model_path=text, n_ctx=512, parallel=2, draft=text[:-len(".gguf")] + "-assistant.gguf")
    try:
        for prompt in ("Hello", "Tell me a long story about the sea and the wind"):
            a = chat(plain.client(), prompt, max_tokens=40, temperature=0)
            b = chat(drafted.client(), prompt, max_tokens=40, temperature=0)
            assert b.choices[0].message.content == a.choices[0].message.content
            assert b.usage.completion_tokens == a.usage.completion_tokens
        st = drafted.state.engine.stats
        assert st["drafted"] > 0 and st["decode_rows"] < st["completion_tokens"]
        r = chat(drafted.client(), "Hi", max_tokens=20, temperature=0.9, seed=3)
        assert r.choices[0].finish_reason in ("stop", "length")
    finally:
        plain.stop()
        drafted.stop()


PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age", "tags"],
          "properties": {"name": {"type": "string", "maxLength": 24}, "age": {"type": "integer"},
                         "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3}}}


@pytest.mark.slow  # the real 270M generates ~900 constrained tokens: ~25 s
def test_response_format_json_schema_and_json_object(g3srv):
    import jsonschema

    c = g3srv.client()
    rf = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    msgs = [{"role": "user", "content": "Describe a person as JSON with name, age and tags."}]
    for kw in ({"temperature": 0}, {"temperature": 1.0, "seed": 5}):
        r = c.chat.completions.create(model="m", messages=msgs, response_format=rf, max_tokens=200, **kw)
        assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
        jsonschema.validate(json.loads(r.choices[0].message.content), PERSON)
    streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
        model="m", messages=msgs, response_format=rf, max_tokens=200, temperature=0, stream=True) if ch.choices)
    jsonschema.validate(json.loads(streamed), PERSON)
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "Return a JSON object with the "
                                                                    "keys city and country for Paris."}],
                                  response_format={"type": "json_object"}, max_tokens=300, temperature=0)
    assert r.choices[0].finish_reason == "stop" and isinstance(json.loads(r.choices[0].message.content), dict)
    with pytest.raises(openai.BadRequestError, match="pattern"):
        c.chat.completions.create(model="m", messages=msgs, max_tokens=5, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "a+"}}})
    with pytest.raises(openai.BadRequestError, match="response_format"):
        c.chat.completions.create(model="m", messages=msgs, max_tokens=5, response_format={"type": "yaml"})
    # plain text format is accepted and unconstrained
    r = c.chat.completions.create(model="m", messages=msgs, max_tokens=5, response_format={"type": "text"})
    assert r.usage.completion_tokens >= 1


def test_forced_tool_choice_yields_a_schema_valid_call(g4srv):
    """tool_choice naming a function: the random-weight model still returns a call of that function
    whose arguments validate against its parameter schema (constrained in Gemma 4's tool syntax)."""
    import jsonschema

    params = {"type": "object", "required": ["city", "days"],
              "properties": {"city": {"type": "string", "maxLength": 12},
                             "days": {"type": "integer"}, "unit": {"enum": ["C", "F"]}}}
    tools = TOOLS + [{"type": "function", "function": {"name": "forecast", "parameters": params}}]
    c = g4srv.client("sekrit")
    msgs = [{"role": "user", "content": "Forecast for Oslo?"}]
    for kw in ({"temperature": 0}, {"temperature": 1.0, "seed": 11}):
        r = c.chat.completions.create(model="m", messages=msgs, tools=tools, max_tokens=120,
                                      tool_choice={"type": "function", "function": {"name": "forecast"}}, **kw)
        ch = r.choices[0]
        assert ch.finish_reason == "tool_calls", ch.message
        (call,) = ch.message.tool_calls
        assert call.function.name == "forecast"
        jsonschema.validate(json.loads(call.function.arguments), params)
    # "required" with several tools: the model names one of them, then its arguments validate
    schemas = {"get_weather": TOOLS[0]["function"]["parameters"], "forecast": params,
               "get": {"type": "object", "properties": {"q": {"type": "boolean"}}, "required": ["q"]}}
    tools3 = tools + [{"type": "function", "function": {"name": "get", "parameters": schemas["get"]}}]
    seen = set()
    for seed in range(6):
        r = c.chat.completions.create(model="m", messages=msgs, tools=tools3, tool_choice="required",
                                      max_tokens=120, temperature=1.0, seed=seed)
        ch = r.choices[0]
        assert ch.finish_reason == "tool_calls", ch.message
        (call,) = ch.message.tool_calls
        jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])
        seen.add(call.function.name)
    assert seen <= set(schemas) and seen
    with pytest.raises(openai.BadRequestError, match="not in 'tools'"):
        c.chat.completions.create(model="m", messages=msgs, tools=tools,
                                  tool_choice={"type": "function", "function": {"name": "nope"}})
