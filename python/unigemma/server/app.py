"""The HTTP side of ``unigemma serve``: a Starlette app (run by uvicorn) in front of the Engine.

Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health,
GET /metrics (Prometheus text). Request handling on the event loop is cheap: prompt building
(tokenizing, image/audio embedding) runs in a worker thread, generation on the engine thread;
events come back through ``loop.call_soon_threadsafe`` into a per-request asyncio queue.

Limits (each a 4xx with a JSON error body, never a hang): bodies over ``max_body_bytes`` (413),
malformed JSON (400), bad fields (400, see openai_api), the queue full (429 + Retry-After),
the engine gone or a request that waited past the queue timeout (503 + Retry-After).
A client that disconnects cancels its generation (streaming: the response task is cancelled;
non-streaming: a watcher on the ASGI receive channel).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..generate import openai_tool_calls
from . import openai_api as api
from .engine import Engine, EngineRequest, EngineStoppedError, QueueFullError


class ServerState:
    def __init__(self, model, engine: Engine, model_name: str, api_key: str | None = None,
                 max_body_bytes: int = 32 << 20, allow_files: bool = True) -> None:
        self.model, self.engine, self.model_name = model, engine, model_name
        self.api_key, self.max_body_bytes, self.allow_files = api_key, max_body_bytes, allow_files
        self.created = int(time.time())
        self.media_lock = threading.Lock()  # one projector, used by one prompt builder at a time
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="unigemma-prompt")
        self.http = {"requests": 0, "errors_4xx": 0, "errors_5xx": 0, "disconnects": 0}


# -- helpers -----------------------------------------------------------------------------------------
def _error(e: api.ApiError, st: ServerState) -> JSONResponse:
    st.http["errors_4xx" if e.status < 500 else "errors_5xx"] += 1
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


async def _read_json(request: Request, st: ServerState) -> dict:
    cl = request.headers.get("content-length")
    if cl is not None:
        try:
            if int(cl) > st.max_body_bytes:
                raise api.ApiError(413, f"request body of {cl} bytes exceeds the limit of {st.max_body_bytes}")
        except ValueError:
            raise api.ApiError(400, "invalid Content-Length header") from None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > st.max_body_bytes:
            raise api.ApiError(413, f"request body exceeds the limit of {st.max_body_bytes} bytes")
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise api.ApiError(400, f"malformed JSON body: {e}") from None
    if not isinstance(obj, dict):
        raise api.ApiError(400, "the JSON body must be an object")
    return obj


def _check_auth(request: Request, st: ServerState) -> None:
    if st.api_key is None:
        return
    if request.headers.get("authorization", "") != f"Bearer {st.api_key}":
        raise api.ApiError(401, "missing or wrong API key (Authorization: Bearer KEY)", code="invalid_api_key")


def _submit(st: ServerState, req: EngineRequest) -> None:
    try:
        st.engine.submit(req)
    except QueueFullError as e:
        raise api.ApiError(429, f"{e}; retry later", headers={"Retry-After": "1"}) from None
    except EngineStoppedError as e:
        raise api.ApiError(503, str(e), headers={"Retry-After": "5"}) from None


def _sink(loop: asyncio.AbstractEventLoop, q: asyncio.Queue):
    def put(ev):
        loop.call_soon_threadsafe(q.put_nowait, ev)
    return put


def _engine_error(e: BaseException) -> api.ApiError:
    if isinstance(e, EngineStoppedError):
        return api.ApiError(503, str(e), headers={"Retry-After": "5"})
    return api.format_error(e)


async def _wait_disconnect(request: Request) -> None:
    while True:
        msg = await request.receive()
        if msg["type"] == "http.disconnect":
            return


# -- prompt building (worker thread) ------------------------------------------------------------------
def _request(st: ServerState, body: dict, prep, chat: bool) -> EngineRequest:
    """The engine request of a prepared generation: max_tokens lowered to the room the prompt
    leaves in a slot."""
    ids = prep.prompt.ids
    max_tokens = api.parse_max_tokens(body, st.engine.n_ctx)
    room = st.engine.n_ctx - len(ids)
    if room < 1:
        raise api.ApiError(400, f"the prompt has {len(ids)} tokens; this server's context is {st.engine.n_ctx} "
                           f"tokens per request, leaving no room to generate", "messages" if chat else "prompt",
                           "context_length_exceeded")
    max_tokens = room if max_tokens is None else min(max_tokens, room)
    return EngineRequest.from_prepared(prep, max_tokens, st.model.hparams["n_embd"])


def build_chat(st: ServerState, body: dict) -> EngineRequest:
    from ..multimodal import collect_media

    m = st.model
    params = api.parse_sampling(body, chat=True)
    msgs = api.convert_messages(body.get("messages"), st.allow_files)
    tools, choice = api.parse_tools(body)
    if tools and m.chat_format != "gemma4":
        raise api.ApiError(400, f"tools are not supported by this model's chat format ({m.chat_format})", "tools")
    thinking = api.chat_thinking(body) and m.chat_format == "gemma4"  # Gemma 3 has no thinking: ignored
    if params.response_format is not None and (isinstance(choice, dict) or choice == "required"):
        raise api.ApiError(400, "response_format cannot be combined with a forced tool_choice", "tool_choice")
    media = collect_media(msgs)
    with st.media_lock if media else contextlib.nullcontext():  # one projector, one user at a time
        try:
            prep = m.prepare_chat(msgs, tools, thinking, params, tool_choice=choice)
        except ValueError as e:
            msg = str(e)
            param = next((p for p in ("response_format", "tools") if msg.startswith(p)), None)
            if param is None:
                raise
            raise api.ApiError(400, msg, param) from None
    return _request(st, body, prep, chat=True)


def build_completion(st: ServerState, body: dict) -> EngineRequest:
    m = st.model
    params = api.parse_sampling(body, chat=False)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        if not prompt:
            raise api.ApiError(400, "'prompt' is empty", "prompt")
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        bad = [t for t in prompt if not 0 <= t < m.n_vocab]
        if bad:
            raise api.ApiError(400, f"token id {bad[0]} is outside the vocabulary [0, {m.n_vocab})", "prompt")
    else:
        raise api.ApiError(400, "'prompt' must be a non-empty string or a list of token ids (one prompt per request)",
                           "prompt")
    if body.get("echo"):
        raise api.ApiError(400, "'echo' is not supported", "echo")
    try:
        prep = m.prepare_generate(prompt, params, add_bos=True)
    except ValueError as e:
        if str(e).startswith("response_format"):
            raise api.ApiError(400, str(e), "response_format") from None
        raise
    return _request(st, body, prep, chat=False)


# -- endpoints ------------------------------------------------------------------------------------------
async def _run(request: Request, build, stream_fn, final_fn):
    st: ServerState = request.app.state.st
    st.http["requests"] += 1
    try:
        _check_auth(request, st)
        body = await _read_json(request, st)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise api.ApiError(400, "'stream' must be a boolean", "stream")
        loop = asyncio.get_running_loop()
        try:
            req = await loop.run_in_executor(st.pool, build, st, body)
        except Exception as e:  # noqa: BLE001
            raise api.format_error(e) from None
        q: asyncio.Queue = asyncio.Queue()
        req.sink = _sink(loop, q)
        _submit(st, req)
    except api.ApiError as e:
        return _error(e, st)
    rid = uuid.uuid4().hex[:24]
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    events = []
    handed_off = False  # streaming: _sse owns the request from here on
    try:
        # wait for a slot first: a queue timeout is then a real 503 status, also when streaming
        while True:
            getter = asyncio.ensure_future(q.get())
            done, _ = await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                req.cancel()
                st.http["disconnects"] += 1
                return Response(status_code=499)
            ev = getter.result()
            if ev[0] == "error":
                return _error(_engine_error(ev[1]), st)
            if ev[0] == "started":
                if stream:
                    handed_off = True
                    break
                continue
            events.append(ev)
            if ev[0] == "done":
                break
    finally:
        watcher.cancel()
        if not handed_off:
            req.cancel()  # no-op when finished
    if stream:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) \
            if isinstance(body.get("stream_options"), dict) else False
        return StreamingResponse(_sse(st, req, q, stream_fn(st, rid, include_usage)), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return JSONResponse(final_fn(st, rid, events))


async def _sse(st: ServerState, req: EngineRequest, q: asyncio.Queue, fmt):
    """Server-sent events; the finally cancels the generation when the client goes away."""
    try:
        for chunk in fmt.send(None) or []:
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        while True:
            ev = await q.get()
            if ev[0] == "error":
                err = _engine_error(ev[1])
                yield f"data: {json.dumps(err.body())}\n\n"
                break
            for chunk in fmt.send(ev) or []:
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
            if ev[0] == "done":
                break
        yield "data: [DONE]\n\n"
    finally:
        req.cancel()  # no-op when finished


def _chat_chunk(st, rid, delta, finish=None, logprobs=None, usage=None):
    c = {"id": f"chatcmpl-{rid}", "object": "chat.completion.chunk", "created": int(time.time()),
         "model": st.model_name, "choices": [{"index": 0, "delta": delta, "logprobs": logprobs,
                                              "finish_reason": finish}]}
    if usage is not None:
        c["choices"] = []
        c["usage"] = usage
    return c


def _chat_stream(st, rid, include_usage):
    """Generator (send events in, get lists of chunks out) for a streamed chat completion."""
    ev = yield [_chat_chunk(st, rid, {"role": "assistant", "content": ""})]
    n_calls = 0
    pending_lp = None
    while True:
        out = []
        kind = ev[0]
        if kind == "token":
            pending_lp = {"content": [api.logprob_entry(st.model.tokenizer, ev[1])]}
            out.append(_chat_chunk(st, rid, {}, logprobs=pending_lp))
        elif kind == "content":
            out.append(_chat_chunk(st, rid, {"content": ev[1]}))
        elif kind == "thinking":
            out.append(_chat_chunk(st, rid, {"reasoning_content": ev[1]}))
        elif kind == "tool_call":
            call = openai_tool_calls([ev[1]])[0]
            call["id"] = f"call_{rid[:8]}_{n_calls}"
            out.append(_chat_chunk(st, rid, {"tool_calls": [{"index": n_calls, **call}]}))
            n_calls += 1
        elif kind == "done":
            d = ev[1]
            out.append(_chat_chunk(st, rid, {}, finish=d["finish_reason"]))
            if include_usage:
                out.append(_chat_chunk(st, rid, {}, usage=_usage(d)))
        ev = yield out


def _usage(d: dict) -> dict:
    u = d["usage"]
    return {"prompt_tokens": u["prompt_tokens"], "completion_tokens": u["completion_tokens"],
            "total_tokens": u["total_tokens"],
            "prompt_tokens_details": {"cached_tokens": u["prompt_tokens_reused"]}}


def _chat_final(st, rid, events) -> dict:
    done = events[-1][1]
    res = done["result"] or {"content": "", "thinking": "", "tool_calls": []}
    calls = openai_tool_calls(res["tool_calls"])
    for i, c in enumerate(calls):
        c["id"] = f"call_{rid[:8]}_{i}"
    msg = {"role": "assistant", "content": res["content"] if (res["content"] or not calls) else None}
    if calls:
        msg["tool_calls"] = calls
    if res.get("thinking"):
        msg["reasoning_content"] = res["thinking"]
    lps = [api.logprob_entry(st.model.tokenizer, ev[1]) for ev in events if ev[0] == "token"]
    finish = done["finish_reason"]
    return {"id": f"chatcmpl-{rid}", "object": "chat.completion", "created": int(time.time()),
            "model": st.model_name,
            "choices": [{"index": 0, "message": msg, "logprobs": {"content": lps} if lps else None,
                         "finish_reason": finish}],
            "usage": _usage(done)}


def _cmpl_chunk(st, rid, text, finish=None, logprobs=None):
    return {"id": f"cmpl-{rid}", "object": "text_completion", "created": int(time.time()), "model": st.model_name,
            "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}]}


def _completion_logprobs(st, infos) -> dict:
    tok = st.model.tokenizer

    def piece(i):
        return tok.token_to_piece(i, special=False).decode("utf-8", errors="replace")
    return {"tokens": [piece(i.id) for i in infos], "token_logprobs": [i.logprob for i in infos],
            "top_logprobs": [{piece(t): lp for t, lp in i.top_logprobs} for i in infos],
            "text_offset": []}


def _cmpl_stream(st, rid, include_usage):
    ev = yield []
    while True:
        out = []
        if ev[0] == "text":
            out.append(_cmpl_chunk(st, rid, ev[1]))
        elif ev[0] == "token":
            out.append(_cmpl_chunk(st, rid, "", logprobs=_completion_logprobs(st, [ev[1]])))
        elif ev[0] == "done":
            out.append(_cmpl_chunk(st, rid, "", finish=ev[1]["finish_reason"]))
            if include_usage:
                c = _cmpl_chunk(st, rid, "")
                c["choices"], c["usage"] = [], _usage(ev[1])
                out.append(c)
        ev = yield out


def _cmpl_final(st, rid, events) -> dict:
    done = events[-1][1]
    text = "".join(ev[1] for ev in events if ev[0] == "text")
    infos = [ev[1] for ev in events if ev[0] == "token"]
    c = _cmpl_chunk(st, rid, text, finish=done["finish_reason"],
                    logprobs=_completion_logprobs(st, infos) if infos else None)
    c["usage"] = _usage(done)
    return c


async def chat_completions(request: Request):
    return await _run(request, build_chat, _chat_stream, _chat_final)


async def completions(request: Request):
    return await _run(request, build_completion, _cmpl_stream, _cmpl_final)


async def models(request: Request):
    st: ServerState = request.app.state.st
    try:
        _check_auth(request, st)
    except api.ApiError as e:
        return _error(e, st)
    return JSONResponse({"object": "list", "data": [
        {"id": st.model_name, "object": "model", "created": st.created, "owned_by": "unigemma",
         "meta": {"n_ctx": st.engine.n_ctx, "parallel": len(st.engine.slots), "arch": st.model.arch,
                  "vision": bool(st.model.media and st.model.media.proj.has_vision),
                  "audio": bool(st.model.media and st.model.media.proj.has_audio)}}]})


async def health(request: Request):
    st: ServerState = request.app.state.st
    if not st.engine.alive:
        return JSONResponse({"status": "error", "error": repr(st.engine.error)}, status_code=503)
    snap = st.engine.snapshot()
    return JSONResponse({"status": "ok", "slots_idle": snap["slots"] - snap["slots_busy"],
                         "slots_processing": snap["slots_busy"], "queue": snap["queue"]})


async def metrics(request: Request):
    st: ServerState = request.app.state.st
    s = st.engine.snapshot()
    lines = []

    def metric(name, kind, help_, value):
        lines.extend([f"# HELP unigemma_{name} {help_}", f"# TYPE unigemma_{name} {kind}",
                      f"unigemma_{name} {value}"])
    metric("requests_total", "counter", "Requests accepted by the engine.", s.get("requests", 0))
    metric("http_requests_total", "counter", "HTTP requests to the generation endpoints.", st.http["requests"])
    metric("http_errors_4xx_total", "counter", "Client errors returned.", st.http["errors_4xx"])
    metric("http_errors_5xx_total", "counter", "Server errors returned.", st.http["errors_5xx"])
    metric("rejected_total", "counter", "Requests refused: queue full or waited too long.",
           s.get("rejected_queue_full", 0) + s.get("rejected_queue_timeout", 0))
    metric("cancelled_total", "counter", "Generations cancelled (client gone).", s.get("cancelled", 0))
    metric("prompt_tokens_total", "counter", "Prompt tokens received.", s.get("prompt_tokens", 0))
    metric("prompt_tokens_evaluated_total", "counter", "Prompt tokens evaluated (not reused from a slot cache).",
           s.get("prompt_tokens_evaluated", 0))
    metric("completion_tokens_total", "counter", "Tokens generated.", s.get("completion_tokens", 0))
    metric("decode_steps_total", "counter", "Batched decode steps.", s.get("decode_steps", 0))
    metric("decode_rows_total", "counter", "Sequences over all decode steps (rows / steps = mean batch).",
           s.get("decode_rows", 0))
    metric("decode_tokens_per_second", "gauge", "Generated tokens per second over the last 10 s.",
           f"{s['decode_tokens_per_second']:.3f}")
    metric("queue_length", "gauge", "Requests waiting for a slot.", s["queue"])
    metric("slots_busy", "gauge", "Slots generating or evaluating a prompt.", s["slots_busy"])
    metric("slots_total", "gauge", "Parallel slots.", s["slots"])
    metric("kv_cache_bytes", "gauge", "KV cache bytes allocated over all slots.", s["kv_bytes"])
    metric("kv_cache_tokens", "gauge", "Positions held in the KV caches.", s["kv_tokens"])
    metric("kv_cache_capacity_tokens", "gauge", "Positions the KV caches can hold.", s["kv_capacity_tokens"])
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


def create_app(state: ServerState) -> Starlette:
    app = Starlette(routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ])
    app.state.st = state
    return app
