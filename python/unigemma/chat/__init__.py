"""Chat formats: prompt rendering for Gemma 4 / Gemma 3, streaming output parsers, stop strings.

Pure Python, no dependency on the C++ extension. ``unigemma.chat_format`` re-exports this API.
"""
from .gemma3 import render_gemma3
from .gemma4 import format_tool_declaration, gemma4_tool_response, render_gemma4, strip_thinking
from .stream import (
    GEMMA3_STOP_STRINGS,
    GEMMA4_STOP_STRINGS,
    Gemma3StreamParser,
    Gemma4StreamParser,
    parse_gemma3,
    parse_gemma4,
    stop_strings,
    stop_token_ids,
)
from .tool_syntax import ChatFormatError, format_value, parse_tool_call, parse_value

__all__ = [
    "ChatFormatError",
    "render_gemma4",
    "render_gemma3",
    "format_tool_declaration",
    "gemma4_tool_response",
    "strip_thinking",
    "Gemma4StreamParser",
    "Gemma3StreamParser",
    "parse_gemma4",
    "parse_gemma3",
    "stop_strings",
    "stop_token_ids",
    "GEMMA4_STOP_STRINGS",
    "GEMMA3_STOP_STRINGS",
    "format_value",
    "parse_value",
    "parse_tool_call",
]
