"""Gemma 3 prompt rendering, matching the chat template of the instruction-tuned Gemma 3 models
(``tokenizer_config.json`` of google/gemma-3-*-it)::

    <bos><start_of_turn>user\\nSYSTEM\\n\\nTEXT<end_of_turn>\\n<start_of_turn>model\\nTEXT<end_of_turn>\\n
    <start_of_turn>model\\n                                   (generation prompt)

* There is no system turn: a leading system message's text plus a blank line is put at the start
  of the first turn. It is not stripped (message texts are).
* ``assistant`` is written ``model``; turns must alternate user / model starting with user.
* Images are ``<start_of_image>`` (the processor expands it); Gemma 3 has no audio input.
"""
from __future__ import annotations

from typing import Any

from .tool_syntax import ChatFormatError


def _system_prefix(content: Any) -> str:
    if isinstance(content, str):
        return content + "\n\n"
    # The template takes the first part's text only.
    if isinstance(content, list) and content and isinstance(content[0], dict) \
            and isinstance(content[0].get("text"), str):
        return content[0]["text"] + "\n\n"
    raise ChatFormatError("system message: content must be a string or start with a text part")


def _content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content.strip()
    if not isinstance(content, list):
        raise ChatFormatError(f"{where}: missing content (need a string or a list of parts)")
    out = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            out.append(part["text"].strip())
        elif kind == "image":
            out.append("<start_of_image>")
        else:
            raise ChatFormatError(f"{where}: unsupported content part for Gemma 3: {part!r}")
    return "".join(out)


def render_gemma3(messages: list[dict], add_generation_prompt: bool = True, bos: str = "<bos>") -> str:
    """Render OpenAI-style ``messages`` as a Gemma 3 prompt string."""
    if not isinstance(messages, (list, tuple)) or not all(isinstance(m, dict) for m in messages):
        raise ChatFormatError("messages must be a list of dicts")
    prefix, loop = "", list(messages)
    if loop and loop[0].get("role") == "system":
        prefix, loop = _system_prefix(loop[0].get("content")), loop[1:]
    out = [bos]
    for i, msg in enumerate(loop):
        role = msg.get("role")
        where = f"message {i + len(messages) - len(loop)} ({role})"
        if role not in ("user", "assistant"):
            raise ChatFormatError(f"{where}: Gemma 3 accepts a leading system message, then user/assistant "
                                  f"turns; got role {role!r}")
        if (role == "user") != (i % 2 == 0):
            raise ChatFormatError(f"{where}: conversation roles must alternate user/assistant/user/...")
        out.append("<start_of_turn>" + ("model" if role == "assistant" else "user") + "\n")
        if i == 0:
            out.append(prefix)
        out.append(_content(msg.get("content"), where) + "<end_of_turn>\n")
    if add_generation_prompt:
        out.append("<start_of_turn>model\n")
    return "".join(out)
