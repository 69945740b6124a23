// JSON values for schemas: the strict parser, the canonical serializer and the small byte trie
// (declarations in json_schema.h).
#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "grammar/json_schema.h"

namespace unigemma::grammar {

namespace {

[[noreturn]] void fail(const std::string& msg) { throw InputError("[json_schema] " + msg); }

// ---- parsing ------------------------------------------------------------------------------

class Parser {
public:
    explicit Parser(std::string_view s) : s_(s) {}

    JsonValue document() {
        JsonValue v = value(0);
        skip_ws();
        if (pos_ != s_.size()) error("trailing characters");
        return v;
    }

private:
    [[noreturn]] void error(const char* what) const {
        fail(std::string("invalid JSON at byte ") + std::to_string(pos_) + ": " + what);
    }
    void skip_ws() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
            ++pos_;
    }
    bool eat(char c) {
        if (pos_ < s_.size() && s_[pos_] == c) {
            ++pos_;
            return true;
        }
        return false;
    }
    bool literal(const char* word) {
        const size_t n = std::strlen(word);
        if (s_.substr(pos_, n) != word) return false;
        pos_ += n;
        return true;
    }

    JsonValue value(int depth) {
        if (depth > 256) error("nesting deeper than 256");
        skip_ws();
        if (pos_ >= s_.size()) error("unexpected end");
        JsonValue v;
        const char c = s_[pos_];
        if (c == '{') {
            ++pos_;
            v.kind = JsonValue::Kind::Object;
            skip_ws();
            if (eat('}')) return v;
            for (;;) {
                skip_ws();
                if (pos_ >= s_.size() || s_[pos_] != '"') error("expected a key");
                std::string key = string();
                skip_ws();
                if (!eat(':')) error("expected ':'");
                v.members.emplace_back(std::move(key), value(depth + 1));
                skip_ws();
                if (eat('}')) return v;
                if (!eat(',')) error("expected ',' or '}'");
            }
        }
        if (c == '[') {
            ++pos_;
            v.kind = JsonValue::Kind::Array;
            skip_ws();
            if (eat(']')) return v;
            for (;;) {
                v.items.push_back(value(depth + 1));
                skip_ws();
                if (eat(']')) return v;
                if (!eat(',')) error("expected ',' or ']'");
            }
        }
        if (c == '"') {
            v.kind = JsonValue::Kind::String;
            v.text = string();
            return v;
        }
        if (literal("true") || literal("false")) {
            v.kind = JsonValue::Kind::Bool;
            v.boolean = s_[pos_ - 4] == 't';  // "true" ends with "true", "false" with "alse"
            return v;
        }
        if (literal("null")) return v;
        if (c == '-' || (c >= '0' && c <= '9')) {
            v.kind = JsonValue::Kind::Number;
            v.text = number();
            return v;
        }
        error("unexpected character");
    }

    std::string number() {
        const size_t start = pos_;
        auto digits = [&] {
            const size_t b = pos_;
            while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
            return pos_ - b;
        };
        eat('-');
        if (eat('0')) {
        } else if (digits() == 0) {
            error("bad number");
        }
        if (eat('.') && digits() == 0) error("bad number");
        if (eat('e') || eat('E')) {
            if (!eat('+')) eat('-');
            if (digits() == 0) error("bad number");
        }
        return std::string(s_.substr(start, pos_ - start));
    }

    unsigned hex4() {
        if (pos_ + 4 > s_.size()) error("bad \\u escape");
        unsigned v = 0;
        for (int i = 0; i < 4; ++i) {
            const char h = s_[pos_++];
            v <<= 4;
            if (h >= '0' && h <= '9') v |= unsigned(h - '0');
            else if (h >= 'a' && h <= 'f') v |= unsigned(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') v |= unsigned(h - 'A' + 10);
            else error("bad \\u escape");
        }
        return v;
    }

    std::string string() {
        ++pos_;  // opening quote
        std::string out;
        for (;;) {
            if (pos_ >= s_.size()) error("unterminated string");
            const unsigned char c = static_cast<unsigned char>(s_[pos_]);
            if (c == '"') {
                ++pos_;
                return out;
            }
            if (c < 0x20) error("control character in string");
            if (c == '\\') {
                ++pos_;
                if (pos_ >= s_.size()) error("unterminated string");
                const char e = s_[pos_++];
                switch (e) {
                    case '"': out += '"'; break;
                    case '\\': out += '\\'; break;
                    case '/': out += '/'; break;
                    case 'b': out += '\b'; break;
                    case 'f': out += '\f'; break;
                    case 'n': out += '\n'; break;
                    case 'r': out += '\r'; break;
                    case 't': out += '\t'; break;
                    case 'u': {
                        uint32_t cp = hex4();
                        if (cp >= 0xDC00 && cp <= 0xDFFF) error("lone low surrogate");
                        if (cp >= 0xD800 && cp <= 0xDBFF) {
                            if (!(eat('\\') && eat('u'))) error("lone high surrogate");
                            const uint32_t lo = hex4();
                            if (lo < 0xDC00 || lo > 0xDFFF) error("bad surrogate pair");
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        }
                        append_utf8(out, cp);
                        break;
                    }
                    default: error("bad escape");
                }
                continue;
            }
            // raw UTF-8: checked so that literals built from it are valid UTF-8
            size_t n = 1;
            if (c >= 0x80) {
                uint8_t lo = 0x80, hi = 0xBF;
                if (c >= 0xC2 && c <= 0xDF) n = 2;
                else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
                else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
                else error("invalid UTF-8");
                if (pos_ + n > s_.size()) error("invalid UTF-8");
                for (size_t k = 1; k < n; ++k) {
                    const unsigned char d = static_cast<unsigned char>(s_[pos_ + k]);
                    if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xBF)) error("invalid UTF-8");
                }
            }
            out.append(s_.substr(pos_, n));
            pos_ += n;
        }
    }

    std::string_view s_;
    size_t pos_ = 0;
};

}  // namespace

void dump_json_string(const std::string& s, std::string& out) {
    static const char* hex = "0123456789abcdef";
    out += '"';
    for (const char ch : s) {
        const unsigned char c = static_cast<unsigned char>(ch);
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (c < 0x20) {
                    out += "\\u00";
                    out += hex[c >> 4];
                    out += hex[c & 15];
                } else {
                    out += ch;
                }
        }
    }
    out += '"';
}

namespace {

void dump_into(const JsonValue& v, std::string& out) {
    switch (v.kind) {
        case JsonValue::Kind::Null: out += "null"; break;
        case JsonValue::Kind::Bool: out += v.boolean ? "true" : "false"; break;
        case JsonValue::Kind::Number: out += v.text; break;
        case JsonValue::Kind::String: dump_json_string(v.text, out); break;
        case JsonValue::Kind::Array:
            out += '[';
            for (size_t i = 0; i < v.items.size(); ++i) {
                if (i) out += ',';
                dump_into(v.items[i], out);
            }
            out += ']';
            break;
        case JsonValue::Kind::Object:
            out += '{';
            for (size_t i = 0; i < v.members.size(); ++i) {
                if (i) out += ',';
                dump_json_string(v.members[i].first, out);
                out += ':';
                dump_into(v.members[i].second, out);
            }
            out += '}';
            break;
    }
}

}  // namespace

const JsonValue* JsonValue::get(std::string_view key) const {
    const JsonValue* found = nullptr;
    for (const auto& m : members)
        if (m.first == key) found = &m.second;
    return found;
}

JsonValue parse_json(std::string_view text) { return Parser(text).document(); }

std::string dump_json(const JsonValue& v) {
    std::string out;
    dump_into(v, out);
    return out;
}

SmallTrie SmallTrie::build(const std::vector<std::string>& strs) {
    // Breadth-first over sorted strings: a node owns a range of them sharing its prefix, so its
    // children (groups by the next byte) can be appended contiguously.
    std::vector<uint32_t> order(strs.size());
    for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return strs[a] < strs[b]; });
    struct Pending {
        uint32_t lo, hi, depth;
    };
    SmallTrie t;
    std::vector<Pending> work{{0, static_cast<uint32_t>(order.size()), 0}};
    t.nodes.emplace_back();
    for (size_t n = 0; n < work.size(); ++n) {
        Pending w = work[n];
        uint32_t lo = w.lo;
        if (lo < w.hi && strs[order[lo]].size() == w.depth) t.nodes[n].value = static_cast<int32_t>(order[lo++]);
        t.nodes[n].first_edge = static_cast<uint32_t>(t.edge_byte.size());
        while (lo < w.hi) {
            const uint8_t c = static_cast<uint8_t>(strs[order[lo]][w.depth]);
            uint32_t hi = lo;
            while (hi < w.hi && static_cast<uint8_t>(strs[order[hi]][w.depth]) == c) ++hi;
            t.edge_byte.push_back(c);
            t.edge_child.push_back(static_cast<uint32_t>(work.size()));
            work.push_back({lo, hi, w.depth + 1});
            t.nodes.emplace_back();
            lo = hi;
        }
        t.nodes[n].n_edges = static_cast<uint32_t>(t.edge_byte.size()) - t.nodes[n].first_edge;
    }
    return t;
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

}  // namespace unigemma::grammar
