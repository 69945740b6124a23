#include "grammar/tool_dialect.h"

#include "grammar/json_schema.h"

#include <algorithm>
#include <numeric>

namespace unigemma::grammar {

namespace {

// Decodes the UTF-8 character at s[i] (valid: the text came through parse_json); returns its
// length.
size_t decode(std::string_view s, size_t i, uint32_t& cp) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    n = std::min(n, s.size() - i);
    cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
    return n;
}

// Python's str.lower() for the scripts property names are commonly written in.
uint32_t lower(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0xC0) return c;
    if (c <= 0xDE) return c == 0xD7 ? c : c + 32;  // Latin-1 capitals (not the multiplication sign)
    if (c >= 0x100 && c <= 0x17F) {                // Latin Extended-A: capital/small pairs
        if (c == 0x130 || c == 0x131 || c == 0x138 || c == 0x149 || c == 0x17F) return c;  // İ ı ĸ ŉ ſ
        if (c == 0x178) return 0xFF;                                                    // Ÿ
        const bool odd_pairs = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
        return (c % 2 == (odd_pairs ? 1u : 0u)) ? c + 1 : c;
    }
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;  // Greek capitals
    if (c >= 0x410 && c <= 0x42F) return c + 32;                // Cyrillic А-Я
    if (c >= 0x400 && c <= 0x40F) return c + 80;                // Cyrillic Ѐ-Џ
    return c;
}

// Python's str.isspace(): what str.strip() removes around a bare key when it is parsed back.
bool is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

}  // namespace

std::string dictsort_key(std::string_view name) {
    std::string out;
    out.reserve(name.size());
    for (size_t i = 0; i < name.size();) {
        uint32_t cp = 0;
        i += decode(name, i, cp);
        append_utf8(out, lower(cp));
    }
    return out;
}

std::vector<uint32_t> dictsort_order(const std::vector<std::string>& names) {
    std::vector<std::string> keys;
    keys.reserve(names.size());
    for (const auto& n : names) keys.push_back(dictsort_key(n));
    std::vector<uint32_t> order(names.size());
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return keys[a] < keys[b]; });
    return order;
}

const char* bare_key_problem(std::string_view name) {
    if (name.empty()) return "it is empty";
    // The parser ends a bare key at any of these; '"' would start a quoted key.
    if (name.find_first_of(":{}[],\"") != std::string_view::npos) return "it contains one of : { } [ ] , \"";
    // The stream parser looks for these outside strings.
    for (std::string_view m : {"<tool_call|>", "<|tool_call>", "<turn|>", "<eos>", "<|tool_response>"})
        if (name.find(m) != std::string_view::npos) return "it contains a chat marker";
    uint32_t first = 0, last = 0;
    decode(name, 0, first);
    size_t i = name.size() - 1;
    while (i > 0 && (static_cast<uint8_t>(name[i]) & 0xC0) == 0x80) --i;
    decode(name, i, last);
    if (is_space(first) || is_space(last)) return "it starts or ends with whitespace";
    return nullptr;
}

bool dump_tool_value(const JsonValue& v, std::string& out) {
    switch (v.kind) {
        case JsonValue::Kind::Null: out += "null"; return true;
        case JsonValue::Kind::Bool: out += v.boolean ? "true" : "false"; return true;
        case JsonValue::Kind::Number: out += v.text; return true;
        case JsonValue::Kind::String:
            if (v.text.find(kToolQuoteText) != std::string::npos) return false;
            out += char(kToolQuote);
            out += v.text;
            out += char(kToolQuote);
            return true;
        case JsonValue::Kind::Array:
            out += '[';
            for (size_t i = 0; i < v.items.size(); ++i) {
                if (i) out += ',';
                if (!dump_tool_value(v.items[i], out)) return false;
            }
            out += ']';
            return true;
        case JsonValue::Kind::Object: {
            // A duplicated key keeps its last value (what parsing the JSON text into a dict gives).
            std::vector<std::string> names;
            std::vector<const JsonValue*> vals;
            for (const auto& m : v.members) {
                auto it = std::find(names.begin(), names.end(), m.first);
                if (it == names.end()) {
                    names.push_back(m.first);
                    vals.push_back(&m.second);
                } else {
                    vals[static_cast<size_t>(it - names.begin())] = &m.second;
                }
            }
            out += '{';
            bool first = true;
            for (uint32_t k : dictsort_order(names)) {
                if (bare_key_problem(names[k])) return false;
                if (!first) out += ',';
                first = false;
                out += names[k];
                out += ':';
                if (!dump_tool_value(*vals[k], out)) return false;
            }
            out += '}';
            return true;
        }
    }
    return false;
}

RawByte raw_string_byte(uint32_t& b, uint8_t c) {
    uint32_t m = b & 15, cont = (b >> 4) & 3, cls = (b >> 6) & 7;
    if (cont) {
        static const uint8_t lo[5] = {0x80, 0xA0, 0x80, 0x90, 0x80}, hi[5] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};
        if (c < lo[cls] || c > hi[cls]) return RawByte::Fail;
        --cont;
        b = (cont << 4);  // cls back to 0; m stays 0 (reset by the lead byte)
        return cont ? RawByte::Mid : RawByte::Char;
    }
    if (c == kToolQuote) return RawByte::Close;
    if (c < 0x80) {
        // `<|"|>` has no proper prefix that is also a suffix of it, so after a mismatch the only
        // partial match left is a fresh '<'.
        if (c == static_cast<uint8_t>(kToolQuoteText[m])) ++m;
        else m = c == '<' ? 1 : 0;
        if (m == kToolQuoteText.size()) return RawByte::Fail;
        b = m;
        return RawByte::Char;
    }
    if (c >= 0xC2 && c <= 0xDF) cont = 1, cls = 0;
    else if (c >= 0xE0 && c <= 0xEF) cont = 2, cls = c == 0xE0 ? 1 : c == 0xED ? 2 : 0;
    else if (c >= 0xF0 && c <= 0xF4) cont = 3, cls = c == 0xF0 ? 3 : c == 0xF4 ? 4 : 0;
    else return RawByte::Fail;
    b = (cont << 4) | (cls << 6);
    return RawByte::Mid;
}

}  // namespace unigemma::grammar
