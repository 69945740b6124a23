"""OpenAI request bodies -> engine requests; engine events -> OpenAI response objects.

Validation raises ``ApiError`` (HTTP status, message, param): every malformed field becomes a
4xx with a message that names the field, never a 500. Numeric ranges follow OpenAI's API where
it has one (temperature 0..2, top_p 0..1, penalties -2..2, top_logprobs 0..20, at most 4 stop
strings); ``max_tokens`` must be 1..n_ctx, and is lowered to the room left after the prompt
(finish_reason "length"), as llama-server does; a prompt that alone does not fit the context
is a 400 with code ``context_length_exceeded``.

Content parts accepted in user messages: ``text``; ``image_url`` with a ``data:image/...;base64``
URL or a local file (``file://`` URL or absolute path, when the server allows local files);
``input_audio`` ``{"data": base64, "format": "wav" | "mp3" | "flac" | "ogg"}``. Remote URLs are
refused (the server never fetches). Tool calls / tool results use OpenAI's message shapes
(rendered by ``chat.render_gemma4``).
"""
from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from ..chat.tool_syntax import ChatFormatError
from ..generation import SamplingParams, TokenLogprob


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        if self.status == 429:
            kind = "rate_limit_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def _bad(msg: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, msg, param, code)


def _number(body: dict, key: str, default, lo: float, hi: float, integer: bool = False, nullable: bool = True):
    v = body.get(key, default)
    if v is None:
        if nullable:
            return default
        raise _bad(f"'{key}' must not be null", key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise _bad(f"'{key}' must be {'an integer' if integer else 'a number'}, got {type(v).__name__}", key)
    if v != v or not lo <= v <= hi:  # NaN fails too
        raise _bad(f"'{key}' must be in [{lo:g}, {hi:g}], got {v!r}", key)
    return v


OPENAI_TEMPERATURE = 1.0  # OpenAI's default when a request gives none (the library's is greedy)


def parse_sampling(body: dict, chat: bool) -> SamplingParams:
    """The SamplingParams of a /v1/chat/completions or /v1/completions body, except max_tokens
    (``parse_max_tokens``: it depends on the prompt). OpenAI's defaults where the body is
    silent (``OPENAI_TEMPERATURE``); everything else is SamplingParams' default."""
    d = SamplingParams()
    out: dict[str, Any] = {}
    out["temperature"] = float(_number(body, "temperature", OPENAI_TEMPERATURE, 0.0, 2.0))
    out["top_p"] = float(_number(body, "top_p", d.top_p, 0.0, 1.0))
    if out["top_p"] == 0.0:
        out["top_p"], out["temperature"] = 1.0, 0.0  # top_p 0 keeps only the most likely token
    out["top_k"] = int(_number(body, "top_k", d.top_k, 0, 1 << 20, integer=True))
    out["min_p"] = float(_number(body, "min_p", d.min_p, 0.0, 1.0))
    out["frequency_penalty"] = float(_number(body, "frequency_penalty", d.frequency_penalty, -2.0, 2.0))
    out["presence_penalty"] = float(_number(body, "presence_penalty", d.presence_penalty, -2.0, 2.0))
    out["repetition_penalty"] = float(_number(body, "repetition_penalty", d.repetition_penalty, 0.01, 10.0))
    out["seed"] = _number(body, "seed", None, -(1 << 63), (1 << 64) - 1, integer=True)
    n = _number(body, "n", 1, 1, 1, integer=True)
    del n  # only n=1 (the range check above says so)
    bias = body.get("logit_bias")
    if bias is not None:
        if not isinstance(bias, dict):
            raise _bad("'logit_bias' must be an object {token id: bias}", "logit_bias")
        try:
            out["logit_bias"] = {int(k): float(v) for k, v in bias.items()}
        except (TypeError, ValueError):
            raise _bad("'logit_bias' keys must be token ids and values numbers", "logit_bias") from None
        if any(not -100.0 <= v <= 100.0 for v in out["logit_bias"].values()):
            raise _bad("'logit_bias' values must be in [-100, 100]", "logit_bias")
    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise _bad("'stop' must be a string or a list of strings", "stop")
    if len(stops) > 4:
        raise _bad(f"'stop' holds at most 4 strings, got {len(stops)}", "stop")
    out["stop"] = stops
    ignore_eos = body.get("ignore_eos", False)  # llama-server's extension (benchmarks): run to max_tokens
    if not isinstance(ignore_eos, bool):
        raise _bad("'ignore_eos' must be a boolean", "ignore_eos")
    if ignore_eos:
        out["stop_tokens"] = ()
    top = parse_logprobs(body, chat)
    if top is not None:
        out["logprobs"], out["top_logprobs"] = True, top
    rf = body.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict):
            raise _bad("'response_format' must be an object", "response_format")
        out["response_format"] = rf
    try:
        return SamplingParams(**out)
    except ValueError as e:
        raise _bad(str(e), "response_format" if "response_format" in str(e) else None) from None


def parse_max_tokens(body: dict, n_ctx: int) -> int | None:
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    v = body.get(key)
    if v is None:
        return None
    return int(_number(body, key, None, 1, n_ctx, integer=True))


def parse_logprobs(body: dict, chat: bool) -> int | None:
    if chat:
        if not body.get("logprobs"):
            if body.get("top_logprobs") is not None:
                raise _bad("'top_logprobs' needs 'logprobs': true", "top_logprobs")
            return None
        if not isinstance(body.get("logprobs"), bool):
            raise _bad("'logprobs' must be a boolean", "logprobs")
        return int(_number(body, "top_logprobs", 0, 0, 20, integer=True))
    v = body.get("logprobs")
    if v is None:
        return None
    return int(_number(body, "logprobs", 0, 0, 5, integer=True))


# -- messages ------------------------------------------------------------------------------------
_AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg")


def _b64(data: Any, where: str) -> bytes:
    if not isinstance(data, str):
        raise _bad(f"{where}: base64 data must be a string", where)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{where}: invalid base64 data", where) from None
    if not raw:
        raise _bad(f"{where}: empty data", where)
    return raw


def _image_source(url: Any, where: str, allow_files: bool):
    if not isinstance(url, str) or not url:
        raise _bad(f"{where}: 'url' must be a non-empty string", where)
    if url.startswith("data:"):
        head, sep, data = url.partition(",")
        if not sep or ";base64" not in head:
            raise _bad(f"{where}: only base64 data URLs are accepted (data:image/png;base64,...)", where)
        return _b64(data, where)
    if url.startswith(("http://", "https://")):
        raise _bad(f"{where}: remote image URLs are not fetched by this local server; send a base64 data URL", where)
    path = url[len("file://"):] if url.startswith("file://") else url
    if not os.path.isabs(path):
        raise _bad(f"{where}: unsupported image URL (expected a data: URL or an absolute local path)", where)
    if not allow_files:
        raise _bad(f"{where}: local files are disabled on this server (--no-local-files)", where)
    if not os.path.isfile(path):
        raise _bad(f"{where}: no such file: {path}", where)
    return path


def convert_messages(messages: Any, allow_files: bool) -> list[dict]:
    """OpenAI messages -> the chat renderer's messages (media parts as our ``image``/``audio``)."""
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list", "messages")
    out = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"{where} must be an object", where)
        m = dict(msg)
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                pw = f"{where}.content[{j}]"
                if not isinstance(part, dict):
                    raise _bad(f"{pw} must be an object", pw)
                t = part.get("type")
                if t == "text":
                    if not isinstance(part.get("text"), str):
                        raise _bad(f"{pw}: 'text' must be a string", pw)
                    parts.append({"type": "text", "text": part["text"]})
                elif t == "image_url":
                    iu = part.get("image_url")
                    url = iu.get("url") if isinstance(iu, dict) else iu
                    parts.append({"type": "image", "image": _image_source(url, pw, allow_files)})
                elif t == "input_audio":
                    ia = part.get("input_audio")
                    if not isinstance(ia, dict):
                        raise _bad(f"{pw}: 'input_audio' must be an object with 'data' and 'format'", pw)
                    fmt = ia.get("format", "wav")
                    if fmt not in _AUDIO_FORMATS:
                        raise _bad(f"{pw}: audio format {fmt!r} is not one of {', '.join(_AUDIO_FORMATS)}", pw)
                    parts.append({"type": "audio", "audio": _b64(ia.get("data"), pw)})
                else:
                    raise _bad(f"{pw}: unsupported content part type {t!r} (text, image_url, input_audio)", pw)
            m["content"] = parts
        elif content is not None and not isinstance(content, str):
            raise _bad(f"{where}: 'content' must be a string, a list of parts or null", where)
        out.append(m)
    return out


def parse_tools(body: dict) -> tuple[list | None, Any]:
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise _bad("'tools' must be a list of tool objects", "tools")
    choice = body.get("tool_choice", "auto" if tools else "none")
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise _bad(f"'tool_choice' must be none, auto, required or a function, got {choice!r}", "tool_choice")
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if isinstance(choice.get("function"), dict) else None
        if choice.get("type") != "function" or not isinstance(name, str):
            raise _bad("'tool_choice' object must be {\"type\": \"function\", \"function\": {\"name\": ...}}",
                       "tool_choice")
        if not any(isinstance(t.get("function"), dict) and t["function"].get("name") == name for t in tools or []):
            raise _bad(f"'tool_choice' names the function {name!r}, which is not in 'tools'", "tool_choice")
    else:
        raise _bad("'tool_choice' must be a string or an object", "tool_choice")
    if choice == "none":
        tools = None
    return tools or None, choice


def chat_thinking(body: dict) -> bool:
    kw = body.get("chat_template_kwargs")
    if isinstance(kw, dict) and "enable_thinking" in kw:
        return bool(kw["enable_thinking"])
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in ("none", "minimal", "low", "medium", "high"):
            raise _bad(f"'reasoning_effort' {effort!r} is not one of none, minimal, low, medium, high",
                       "reasoning_effort")
        return effort not in ("none", "minimal")
    return bool(body.get("thinking", False))


def format_error(e: Exception) -> ApiError:
    """Library exceptions raised while building a prompt -> 4xx."""
    from .. import _core
    from ..preprocess.errors import MediaError

    if isinstance(e, ApiError):
        return e
    if isinstance(e, _core.ContextOverflowError):
        return ApiError(400, str(e), "messages", "context_length_exceeded")
    if isinstance(e, (MediaError,)):
        return ApiError(400, f"media: {e}", "messages", "invalid_media")
    if isinstance(e, (ChatFormatError, ValueError, _core.InputError, TypeError)):
        return ApiError(400, str(e), None, "invalid_request")
    return ApiError(500, f"{type(e).__name__}: {e}")


def logprob_entry(tokenizer, info: TokenLogprob) -> dict:
    """A chat completion's ``logprobs.content`` entry."""
    def piece(i: int) -> str:
        return tokenizer.token_to_piece(i, special=True).decode("utf-8", errors="replace")

    def entry(i: int, lp: float) -> dict:
        t = piece(i)
        return {"token": t, "logprob": lp, "bytes": list(t.encode())}

    e = entry(info.id, info.logprob)
    e["top_logprobs"] = [entry(i, lp) for i, lp in info.top_logprobs]
    return e
