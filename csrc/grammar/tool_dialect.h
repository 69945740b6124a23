// Gemma 4 tool-call dialect for constrained decoding (python/unigemma/chat/tool_syntax.py is the
// reference writer and parser). With Dialect::Gemma4Tool the compiled schema (json_schema.h)
// describes the argument object of a call, `{k:v,...}` in `<|tool_call>call:NAME{...}<tool_call|>`:
//
//   - strings are opened and closed by the `<|"|>` token. The matcher sees that token as one
//     symbol, the byte kToolQuote, which TokenVocab assigns to it and no other usable token
//     contains (0xFF never occurs in valid UTF-8). The content is raw: no escapes, any valid
//     UTF-8 that does not contain the delimiter's text `<|"|>` either (the parser works on
//     decoded text, where the two spellings look the same). minLength / maxLength count code
//     points;
//   - object keys are bare, spelled exactly as the declared property names, and come in Jinja
//     dictsort order (case-insensitive, ties in declaration order); required keys must appear,
//     optional ones may be skipped. Only declared keys are generated: additionalProperties is
//     accepted but produces nothing, so a schema without properties allows only `{}`. A name
//     that cannot be written bare (empty, holding one of : { } [ ] , " or a chat marker,
//     starting or ending with whitespace) is an error;
//   - enum / const values are rendered in the dialect (strings delimited, object keys bare and
//     dictsorted); values that cannot be rendered (a string holding `<|"|>`, a key that cannot
//     be bare) are left out;
//   - numbers, true / false / null and [a,b] lists as in JSON; no whitespace anywhere;
//   - the top-level value must be an object (a union root keeps its object alternatives).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/json_schema.h"

namespace unigemma::grammar {

constexpr uint8_t kToolQuote = 0xFF;                 // the `<|"|>` token, as the matcher sees it
constexpr std::string_view kToolQuoteText = "<|\"|>";

// Jinja dictsort key of a property name: the name lowercased (ASCII, Latin-1, Latin
// Extended-A, Greek and Cyrillic capitals; other characters as they are). UTF-8 byte order of
// the keys is code-point order, which is how Python compares the lowered strings.
std::string dictsort_key(std::string_view name);
// Permutation that puts names in dictsort order (stable: ties keep their order).
std::vector<uint32_t> dictsort_order(const std::vector<std::string>& names);
// Why a property name cannot be written as a bare key, or null if it can.
const char* bare_key_problem(std::string_view name);
// Appends v in the dialect (enum / const literals); false if it cannot be written (out is
// then unspecified).
bool dump_tool_value(const JsonValue& v, std::string& out);

// Raw string content, one byte at a time. State (Frame::b of a dialect string frame), laid out
// like the JSON string state in json_grammar.cpp so the same masks read it:
//   bits 0-3  characters of `<|"|>` matched at the end of the content (0-4; 5 would complete it)
//   bits 4-5  UTF-8 continuation bytes still expected
//   bits 6-8  range of the next continuation byte (0 80-BF, 1 A0-BF, 2 80-9F, 3 90-BF, 4 80-8F)
enum class RawByte : uint8_t { Fail, Close, Mid, Char };
RawByte raw_string_byte(uint32_t& b, uint8_t c);  // Close: c is kToolQuote (state untouched)
inline bool raw_char_boundary(uint32_t b) { return (b & 0x30) == 0; }
// The byte that would extend a partial `<|"|>` match at a character boundary, or -1 if none
// is under way: a run of plain characters is safe after the state unless it starts with it.
inline int raw_danger_byte(uint32_t b) {
    const uint32_t m = b & 15;
    return m ? static_cast<uint8_t>(kToolQuoteText[m]) : -1;
}

}  // namespace unigemma::grammar
