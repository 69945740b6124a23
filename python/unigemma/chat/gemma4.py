"""Gemma 4 prompt rendering (reference §7), written to give the same text as the chat template
shipped with the model (llama.cpp's ``google-gemma-4-31B-it.jinja``) for valid input.

Layout of a rendered conversation::

    <bos><|turn>system\\n[<|think|>\\n]SYSTEM TEXT<|tool>declaration:...<tool|>...<turn|>\\n
    <|turn>user\\nTEXT<turn|>\\n
    <|turn>model\\n<|tool_call>call:f{...}<tool_call|><|tool_response>response:f{...}<tool_response|>ANSWER<turn|>\\n
    <|turn>model\\n<|channel>thought\\n<channel|>          (generation prompt, thinking off)

Rules, in the template's order:

* The system turn exists when thinking is on, when tools are given, or when the first message is
  ``system``/``developer``. It holds ``<|think|>\\n`` (thinking on), the stripped system text, then
  one ``<|tool>declaration:NAME{...}<tool|>`` per tool.
* ``assistant`` is written ``model``. An assistant message whose previous non-tool message is
  also an assistant continues the same model turn (no second ``<|turn>model``).
* Earlier assistant text has its ``<|channel>...<channel|>`` segments removed and is stripped.
  Reasoning (``reasoning`` / ``reasoning_content``) is re-inserted only for assistant messages
  with tool calls after the last user message.
* Tool results (the ``tool`` messages right after an assistant message with ``tool_calls``) are
  written inside that model turn, right after the calls. A model turn whose results are in and
  which has no text stays open; one whose calls have no results yet ends in ``<|tool_response>``
  (the token the model stops on), and then no generation prompt is added either.

Deliberate differences from the template (only for input the template mishandles):

* ``arguments`` given as a JSON string (the OpenAI wire form) is parsed and rendered like a
  dict; the template pastes the string verbatim, giving ``call:f{{"a": 1}}``.
* A tool message whose content is a JSON object/array string is rendered as that value
  (``response:f{temp:21}``, the native Gemma form); the template writes the raw string
  (``response:f{value:<|"|>{"temp": 21}<|"|>}``). Scalars ("42", "true") stay strings.
* ``None`` is written ``null``, as the model writes it in its own calls; the template prints
  Python's ``None``.
* A tool result whose ``tool_call_id`` matches no call uses its ``name``; the template, when
  neither side has an id, takes the last call's name for every result (``None == None``).
  Without ``name`` or a matching id, results are paired with calls by position.
* System content given as a list of parts is joined; the template prints the list's repr.
* Invalid input raises ``ChatFormatError`` where the template would silently drop or mangle it:
  unknown roles or part types, missing content, tool messages that follow no tool call, tool
  schemas that are not objects / lack ``"type"`` at the top of ``parameters``.
"""
from __future__ import annotations

import json
from typing import Any

from .tool_syntax import STR, ChatFormatError, dictsorted, format_object_body, format_value

ROLES = ("system", "developer", "user", "assistant", "tool")
MEDIA_PLACEHOLDERS = {"image": "<|image|>", "audio": "<|audio|>", "video": "<|video|>"}
EMPTY_THOUGHT = "<|channel>thought\n<channel|>"

# JSON-schema keys that describe a property itself rather than name a nested property.
_STANDARD_SCHEMA_KEYS = ("description", "type", "properties", "required", "nullable")


# ---------------------------------------------------------------------------------------------
# Tool declarations (template macros format_function_declaration / format_parameters)
# ---------------------------------------------------------------------------------------------
def _upper_type(t: Any, where: str) -> str:
    if t is None:
        return ""  # the template prints an undefined type as an empty string
    if not isinstance(t, str):
        raise ChatFormatError(f"{where}: 'type' must be a single string (use 'nullable' for null), got {t!r}")
    return t.upper()


def _quoted_list(items: Any, where: str) -> str:
    if not isinstance(items, (list, tuple)):
        raise ChatFormatError(f"{where}: 'required' must be a list, got {items!r}")
    return "[" + ",".join(STR + str(i) + STR for i in items) + "]"


def _format_properties(properties: dict, where: str) -> str:
    """Each non-standard key of ``properties`` as ``name:{description:..,...,type:<|"|>T<|"|>}``."""
    out = []
    for name, schema in dictsorted(properties):
        if name in _STANDARD_SCHEMA_KEYS:
            continue
        here = f"{where}.{name}"
        if not isinstance(schema, dict):
            raise ChatFormatError(f"{here}: a property schema must be an object, got {schema!r}")
        ptype = _upper_type(schema.get("type"), here)
        fields = []
        if schema.get("description"):
            fields.append("description:" + STR + str(schema["description"]) + STR)
        if ptype == "STRING" and schema.get("enum"):
            fields.append("enum:" + format_value(schema["enum"], quote_keys=True))
        elif ptype == "ARRAY" and isinstance(schema.get("items"), dict) and schema["items"]:
            fields.append("items:{" + _format_items(schema["items"], here + ".items") + "}")
        if schema.get("nullable"):
            fields.append("nullable:true")
        if ptype == "OBJECT":
            nested = schema.get("properties")
            # Without a 'properties' mapping the template walks the schema's own keys.
            nested = nested if isinstance(nested, dict) else schema
            fields.append("properties:{" + _format_properties(nested, here) + "}")
            if schema.get("required"):
                fields.append("required:" + _quoted_list(schema["required"], here))
        fields.append("type:" + STR + ptype + STR)
        out.append(str(name) + ":{" + ",".join(fields) + "}")
    return ",".join(out)


def _format_items(items: dict, where: str) -> str:
    """The ``items`` schema of an array: its keys in sorted order, None values skipped."""
    out = []
    for key, value in dictsorted(items):
        if value is None:
            continue
        if key == "properties":
            out.append("properties:{" + (_format_properties(value, where) if isinstance(value, dict) else "") + "}")
        elif key == "required":
            out.append("required:" + _quoted_list(value, where))
        elif key == "type":
            if isinstance(value, str):
                out.append("type:" + format_value(value.upper()))
            elif isinstance(value, (list, tuple)):
                out.append("type:" + format_value([str(v).upper() for v in value]))
            else:
                raise ChatFormatError(f"{where}: bad 'type' {value!r}")
        else:
            out.append(str(key) + ":" + format_value(value, quote_keys=True))
    return ",".join(out)


def format_tool_declaration(tool: Any) -> str:
    """``declaration:NAME{description:<|"|>..<|"|>,parameters:{...}}`` for one OpenAI tool."""
    if not isinstance(tool, dict) or not isinstance(tool.get("function"), dict):
        raise ChatFormatError(f'a tool must be {{"type": "function", "function": {{...}}}}, got {tool!r}')
    if tool.get("type", "function") != "function":
        raise ChatFormatError(f"unsupported tool type {tool.get('type')!r}")
    fn = tool["function"]
    name = fn.get("name")
    if not isinstance(name, str) or not name or any(c in name for c in " \t\n{}:"):
        raise ChatFormatError(f"tool function needs a name without spaces, braces or colons, got {name!r}")
    where = f"tool {name!r}"
    text = "declaration:" + name + "{description:" + STR + str(fn.get("description") or "") + STR
    params = fn.get("parameters")
    if params:
        if not isinstance(params, dict):
            raise ChatFormatError(f"{where}: 'parameters' must be a JSON schema object, got {params!r}")
        if not params.get("type"):
            # The template would leave 'parameters:{' unclosed.
            raise ChatFormatError(f"{where}: 'parameters' needs a 'type' (normally \"object\")")
        props = params.get("properties")
        text += ",parameters:{"
        if props:
            if not isinstance(props, dict):
                raise ChatFormatError(f"{where}: 'properties' must be an object, got {props!r}")
            text += "properties:{" + _format_properties(props, where) + "},"
        if params.get("required"):
            text += "required:" + _quoted_list(params["required"], where) + ","
        text += "type:" + STR + _upper_type(params["type"], where) + STR + "}"
    if "response" in fn:
        resp = fn["response"] if isinstance(fn["response"], dict) else {}
        text += ",response:{"
        if resp.get("description"):
            text += "description:" + STR + str(resp["description"]) + STR + ","
        rtype = _upper_type(resp.get("type"), where + " response")
        if rtype == "OBJECT":
            text += "type:" + STR + rtype + STR + "}"
    return (text + "}").strip()


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------
def strip_thinking(text: str) -> str:
    """Drop every ``<|channel>...<channel|>`` segment (template macro strip_thinking), then strip.
    A ``<|channel>`` without a closing ``<channel|>`` drops the rest of the text."""
    kept = []
    for part in text.split("<channel|>"):
        kept.append(part.split("<|channel>")[0])
    return "".join(kept).strip()


def gemma4_tool_response(name: str, result: Any) -> str:
    """``<|tool_response>response:NAME{...}<tool_response|>``: an object result is written as
    its own keys, anything else as ``{value:...}``."""
    if not isinstance(name, str) or not name:
        raise ChatFormatError(f"tool response needs a function name, got {name!r}")
    body = format_object_body(result) if isinstance(result, dict) else "value:" + format_value(result)
    return "<|tool_response>response:" + name + "{" + body + "}<tool_response|>"


def _parse_arguments(args: Any, name: str) -> dict:
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            raise ChatFormatError(f"tool call {name!r}: arguments string is not JSON ({e})") from None
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise ChatFormatError(f"tool call {name!r}: arguments must be an object, got {args!r}")
    return args


def _tool_call_text(call: Any) -> str:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise ChatFormatError(f'a tool call must be {{"type": "function", "function": {{"name": ...}}}}, got {call!r}')
    args = _parse_arguments(fn.get("arguments"), fn["name"])
    return "<|tool_call>call:" + fn["name"] + "{" + format_object_body(args) + "}<tool_call|>"


def _tool_result_value(content: Any, where: str) -> Any:
    """What a tool message's content stands for: text parts joined; JSON objects/arrays parsed."""
    if content is None:
        raise ChatFormatError(f"{where}: tool message without content")
    if isinstance(content, list):
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    if isinstance(content, str):
        s = content.strip()
        if s[:1] in ("{", "["):
            try:
                return json.loads(s)
            except json.JSONDecodeError:
                pass
    return content


def _content_text(content: Any, role: str, where: str) -> tuple[str, str | None]:
    """Render a message's content: (text, kind of the last media item or None).
    Model text has thought channels stripped; other text is stripped of outer whitespace."""
    clean = strip_thinking if role == "model" else str.strip
    if isinstance(content, str):
        return clean(content), None
    if not isinstance(content, list):
        raise ChatFormatError(f"{where}: content must be a string or a list of parts, got {type(content).__name__}")
    out, last_media = [], None
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise ChatFormatError(f"{where}: text part without a 'text' string: {part!r}")
            out.append(clean(part["text"]))
        elif kind in MEDIA_PLACEHOLDERS:
            out.append(MEDIA_PLACEHOLDERS[kind])
            last_media = kind
        else:
            raise ChatFormatError(f"{where}: unknown content part {part!r} (expected text/image/audio/video)")
    return "".join(out), last_media


def _system_text(content: Any) -> str:
    if isinstance(content, list):
        text, media = _content_text(content, "system", "system message")
        if media:
            raise ChatFormatError("system message: media parts are not allowed")
        return text.strip()
    if not isinstance(content, str):
        raise ChatFormatError("system message: missing content")
    return content.strip()


def _validate(messages: Any) -> None:
    if not isinstance(messages, (list, tuple)):
        raise ChatFormatError(f"messages must be a list, got {type(messages).__name__}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ChatFormatError(f"message {i}: must be a dict, got {type(m).__name__}")
        role = m.get("role")
        if role not in ROLES:
            raise ChatFormatError(f"message {i}: unknown role {role!r} (expected one of {', '.join(ROLES)})")
        has_calls = role == "assistant" and (m.get("tool_calls") or m.get("tool_responses"))
        if m.get("content") is None and not has_calls:
            raise ChatFormatError(f"message {i} ({role}): missing content")
        if m.get("tool_calls") is not None and not isinstance(m["tool_calls"], list):
            raise ChatFormatError(f"message {i}: 'tool_calls' must be a list")


def render_gemma4(messages: list[dict], tools: list[dict] | None = None, thinking: bool = False,
                  add_generation_prompt: bool = True, bos: str = "<bos>") -> str:
    """Render OpenAI-style ``messages`` (and ``tools``) as a Gemma 4 prompt string."""
    _validate(messages)
    if tools is not None and not isinstance(tools, (list, tuple)):
        raise ChatFormatError(f"tools must be a list, got {type(tools).__name__}")
    out = [bos]
    loop = list(messages)
    last_kind = None  # what the last rendered thing was: decides turn ends and the gen prompt
    if thinking or tools or (loop and loop[0]["role"] in ("system", "developer")):
        out.append("<|turn>system\n")
        if thinking:
            out.append("<|think|>\n")
        if loop and loop[0]["role"] in ("system", "developer"):
            out.append(_system_text(loop[0]["content"]))
            loop = loop[1:]
        for tool in tools or ():
            out.append("<|tool>" + format_tool_declaration(tool) + "<tool|>")
        out.append("<turn|>\n")

    last_user = max((i for i, m in enumerate(loop) if m["role"] == "user"), default=-1)
    consumed: set[int] = set()  # indices of tool messages written inside a model turn
    prev_role = None            # role of the previous non-tool message
    for i, msg in enumerate(loop):
        role = msg["role"]
        where = f"message {i + len(messages) - len(loop)} ({role})"
        if role == "tool":
            if i not in consumed:
                raise ChatFormatError(f"{where}: a tool result must directly follow the assistant "
                                      "message (or other tool results) with its tool_calls")
            continue
        last_kind = None
        turn_role = "model" if role == "assistant" else role
        if not (role == "assistant" and prev_role == "assistant"):
            out.append("<|turn>" + turn_role + "\n")
        prev_role = role

        calls = msg.get("tool_calls") or [] if role == "assistant" else []
        reasoning = msg.get("reasoning") or msg.get("reasoning_content")
        if reasoning and calls and i > last_user:
            out.append("<|channel>thought\n" + reasoning + "\n<channel|>")
        for call in calls:
            out.append(_tool_call_text(call))
        if calls:
            last_kind = "tool_call"

        wrote_results = False
        if role == "assistant" and msg.get("tool_responses"):
            # Google's native form: results embedded in the assistant message.
            for r in msg["tool_responses"]:
                if not isinstance(r, dict) or "response" not in r:
                    raise ChatFormatError(f"{where}: tool_responses entries need 'name' and 'response'")
                out.append(gemma4_tool_response(r.get("name") or "unknown", r["response"]))
                wrote_results = True
        elif calls:
            k = i + 1
            while k < len(loop) and loop[k]["role"] == "tool":
                follow = loop[k]
                name = _result_name(follow, calls, k - i - 1)
                if name is None:
                    raise ChatFormatError(f"message {k + len(messages) - len(loop)} (tool): no 'name', "
                                          "and its tool_call_id matches no call")
                value = _tool_result_value(follow.get("content"), f"message {k} (tool)")
                out.append(gemma4_tool_response(name, value))
                consumed.add(k)
                wrote_results = True
                k += 1
        if wrote_results:
            last_kind = "tool_response"

        content = msg.get("content")
        if content is not None:
            text, media = _content_text(content, turn_role, where)
            out.append(text)
            last_kind = media or last_kind

        if last_kind == "tool_call" and not wrote_results:
            out.append("<|tool_response>")   # the model's stop token after a call
        elif not (wrote_results and not content):
            out.append("<turn|>\n")
        # else: results are in, no text yet -> the model turn stays open for the answer

    if add_generation_prompt and last_kind not in ("tool_response", "tool_call"):
        out.append("<|turn>model\n")
        if not thinking:
            out.append(EMPTY_THOUGHT)
    return "".join(out)


def _result_name(tool_msg: dict, calls: list, position: int) -> str | None:
    """The function a tool message answers: by tool_call_id, else its name, else by position."""
    call_id = tool_msg.get("tool_call_id")
    if call_id is not None:
        for c in calls:
            if isinstance(c, dict) and c.get("id") == call_id:
                return c["function"]["name"]
    if isinstance(tool_msg.get("name"), str) and tool_msg["name"]:
        return tool_msg["name"]
    if position < len(calls):
        return calls[position]["function"]["name"]
    return None
