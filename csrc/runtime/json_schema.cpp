#include "runtime/json_schema.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "common/error.h"

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

    static void put_utf8(std::string& out, uint32_t cp) {
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
                        put_utf8(out, cp);
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

void dump_string(const std::string& s, std::string& out) {
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

void dump_into(const JsonValue& v, std::string& out) {
    switch (v.kind) {
        case JsonValue::Kind::Null: out += "null"; break;
        case JsonValue::Kind::Bool: out += v.boolean ? "true" : "false"; break;
        case JsonValue::Kind::Number: out += v.text; break;
        case JsonValue::Kind::String: dump_string(v.text, out); break;
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
                dump_string(v.members[i].first, out);
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

// ---- compilation --------------------------------------------------------------------------

namespace {

const std::set<std::string, std::less<>>& annotations() {
    static const std::set<std::string, std::less<>> s{
        "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
        "writeOnly", "discriminator", "contentMediaType", "contentEncoding", "$defs", "definitions"};
    return s;
}

const std::set<std::string, std::less<>>& supported() {
    static const std::set<std::string, std::less<>> s{
        "type", "properties", "required", "additionalProperties", "enum", "const", "items", "prefixItems",
        "additionalItems", "minItems", "maxItems", "minLength", "maxLength", "anyOf", "oneOf", "allOf", "$ref"};
    return s;
}

enum TypeBit : unsigned { T_OBJECT = 1, T_ARRAY = 2, T_STRING = 4, T_NUMBER = 8, T_INTEGER = 16, T_BOOL = 32, T_NULL = 64 };
constexpr unsigned T_ALL = 127;

unsigned type_bit(const std::string& name) {
    if (name == "object") return T_OBJECT;
    if (name == "array") return T_ARRAY;
    if (name == "string") return T_STRING;
    if (name == "number") return T_NUMBER;
    if (name == "integer") return T_INTEGER;
    if (name == "boolean") return T_BOOL;
    if (name == "null") return T_NULL;
    fail("unknown type '" + name + "'");
}

bool value_has_type(const JsonValue& v, unsigned types) {
    switch (v.kind) {
        case JsonValue::Kind::Object: return types & T_OBJECT;
        case JsonValue::Kind::Array: return types & T_ARRAY;
        case JsonValue::Kind::String: return types & T_STRING;
        case JsonValue::Kind::Bool: return types & T_BOOL;
        case JsonValue::Kind::Null: return types & T_NULL;
        case JsonValue::Kind::Number:
            if (types & T_NUMBER) return true;
            return (types & T_INTEGER) && v.text.find_first_of(".eE") == std::string::npos;
    }
    return false;
}

uint32_t count_arg(const JsonValue& v, const char* kw) {
    if (v.kind != JsonValue::Kind::Number || v.text[0] == '-' || v.text.find_first_of(".eE") != std::string::npos ||
        v.text.size() > 9)
        fail(std::string("'") + kw + "' must be a non-negative integer below 10^9");
    return static_cast<uint32_t>(std::stoul(v.text));
}

class Compiler {
public:
    Compiler(Schema& s, const JsonValue* doc) : s_(s), doc_(doc) {}

    uint32_t node_for(const JsonValue& v) {
        if (v.kind == JsonValue::Kind::Bool) return v.boolean ? any() : never();
        if (v.kind != JsonValue::Kind::Object) fail("a schema must be an object or a boolean");
        std::vector<std::string> validation;  // validation keywords present, in document order
        for (const auto& m : v.members) {
            if (annotations().count(m.first)) continue;
            if (!supported().count(m.first)) fail("keyword '" + m.first + "' is not supported");
            validation.push_back(m.first);
        }
        auto only = [&](const char* kw) {
            for (const auto& k : validation)
                if (k != kw) fail(std::string("'") + kw + "' together with '" + k + "' is not supported");
        };
        if (const JsonValue* ref = v.get("$ref")) {
            only("$ref");
            if (ref->kind != JsonValue::Kind::String) fail("'$ref' must be a string");
            return ref_node(ref->text);
        }
        if (const JsonValue* all = v.get("allOf")) {
            only("allOf");
            if (all->kind != JsonValue::Kind::Array || all->items.size() != 1)
                fail("keyword 'allOf' is not supported (only a one-element allOf)");
            return node_for(all->items[0]);
        }
        const JsonValue* any_of = v.get("anyOf");
        const JsonValue* one_of = v.get("oneOf");
        if (any_of || one_of) {
            if (any_of && one_of) fail("'anyOf' together with 'oneOf' is not supported");
            only(any_of ? "anyOf" : "oneOf");
            const JsonValue* alts = any_of ? any_of : one_of;
            if (alts->kind != JsonValue::Kind::Array || alts->items.empty())
                fail(std::string("'") + (any_of ? "anyOf" : "oneOf") + "' must be a non-empty array");
            const uint32_t id = new_union();
            for (const auto& a : alts->items) {
                const uint32_t n = node_for(a);
                raw_unions_[s_.nodes[id].spec].push_back(n);
            }
            return id;
        }

        unsigned types = 0;
        if (const JsonValue* t = v.get("type")) {
            if (t->kind == JsonValue::Kind::String) {
                types = type_bit(t->text);
            } else if (t->kind == JsonValue::Kind::Array && !t->items.empty()) {
                for (const auto& e : t->items) {
                    if (e.kind != JsonValue::Kind::String) fail("'type' must be a string or an array of strings");
                    types |= type_bit(e.text);
                }
            } else {
                fail("'type' must be a string or a non-empty array of strings");
            }
        }

        const JsonValue* en = v.get("enum");
        const JsonValue* co = v.get("const");
        if (en || co) {
            for (const auto& k : validation)
                if (k != "enum" && k != "const" && k != "type")
                    fail("'" + std::string(en ? "enum" : "const") + "' together with '" + k + "' is not supported");
            if (en && en->kind != JsonValue::Kind::Array) fail("'enum' must be an array");
            std::vector<std::string> texts;
            auto add = [&](const JsonValue& e) {
                if (types && !value_has_type(e, types)) return;
                std::string d = dump_json(e);
                if (std::find(texts.begin(), texts.end(), d) == texts.end()) texts.push_back(std::move(d));
            };
            if (co) {
                const std::string d = dump_json(*co);
                bool in_enum = !en;
                if (en)
                    for (const auto& e : en->items) in_enum = in_enum || dump_json(e) == d;
                if (in_enum) add(*co);
            } else {
                for (const auto& e : en->items) add(e);
            }
            return literal(texts);
        }

        if (!types) {  // no type: the families whose keywords appear, else any value
            for (const auto& k : validation) {
                if (k == "properties" || k == "required" || k == "additionalProperties") types |= T_OBJECT;
                else if (k == "items" || k == "prefixItems" || k == "additionalItems" || k == "minItems" || k == "maxItems") types |= T_ARRAY;
                else if (k == "minLength" || k == "maxLength") types |= T_STRING;
            }
            if (!types) return any();
        }
        std::vector<uint32_t> parts;
        if (types & T_OBJECT) parts.push_back(object_node(v));
        if (types & T_ARRAY) parts.push_back(array_node(v));
        if (types & T_STRING) parts.push_back(string_node(v));
        if (types & T_NUMBER) parts.push_back(number_node(false));
        else if (types & T_INTEGER) parts.push_back(number_node(true));
        if (types & T_BOOL) parts.push_back(literal({"true", "false"}));
        if (types & T_NULL) parts.push_back(literal({"null"}));
        if (parts.size() == 1) return parts[0];
        const uint32_t id = new_union();
        raw_unions_[s_.nodes[id].spec] = parts;
        return id;
    }

    // The value of any JSON type (objects and arrays of any values inside).
    uint32_t any() {
        if (any_ >= 0) return static_cast<uint32_t>(any_);
        const uint32_t id = new_union();
        any_ = static_cast<int32_t>(id);
        const uint32_t obj = new_node(NodeKind::Object, static_cast<uint32_t>(s_.objects.size()));
        s_.objects.emplace_back();
        s_.objects.back().additional = static_cast<int32_t>(id);
        const uint32_t arr = new_node(NodeKind::Array, static_cast<uint32_t>(s_.arrays.size()));
        s_.arrays.emplace_back();
        s_.arrays.back().items = static_cast<int32_t>(id);
        any_object_ = obj;
        raw_unions_[s_.nodes[id].spec] = {obj, arr, string_node(JsonValue{}), number_node(false),
                                          literal({"true", "false", "null"})};
        return id;
    }
    uint32_t any_object() {
        any();
        return any_object_;
    }

    void finalize(uint32_t root) {
        s_.root = root;
        satisfiability();
        flatten_unions();
        depth_needs();
        first_sets();
        for (auto& o : s_.objects) finish_object(o);
        for (auto& a : s_.arrays) finish_array(a);
        if (!s_.nodes[root].satisfiable) fail("no JSON value satisfies the schema");
    }

private:
    uint32_t new_node(NodeKind k, uint32_t spec) {
        Node n;
        n.kind = k;
        n.spec = spec;
        s_.nodes.push_back(n);
        return static_cast<uint32_t>(s_.nodes.size() - 1);
    }
    uint32_t new_union() {
        raw_unions_.emplace_back();
        return new_node(NodeKind::Union, static_cast<uint32_t>(raw_unions_.size() - 1));
    }
    uint32_t never() { return new_union(); }
    uint32_t literal(const std::vector<std::string>& texts) {
        s_.literals.push_back(SmallTrie::build(texts));
        return new_node(NodeKind::Literal, static_cast<uint32_t>(s_.literals.size() - 1));
    }
    uint32_t number_node(bool integer) { return new_node(NodeKind::Number, integer ? 1 : 0); }
    uint32_t string_node(const JsonValue& v) {
        StringSpec sp;
        if (v.kind == JsonValue::Kind::Object) {
            if (const JsonValue* a = v.get("minLength")) sp.min_len = count_arg(*a, "minLength");
            if (const JsonValue* a = v.get("maxLength")) sp.max_len = count_arg(*a, "maxLength");
        }
        s_.strings.push_back(sp);
        return new_node(NodeKind::String, static_cast<uint32_t>(s_.strings.size() - 1));
    }

    uint32_t object_node(const JsonValue& v) {
        ObjectSpec o;
        if (const JsonValue* props = v.get("properties")) {
            if (!props->is_object()) fail("'properties' must be an object");
            for (const auto& m : props->members) {
                if (std::find(o.names.begin(), o.names.end(), m.first) != o.names.end())
                    fail("duplicate property '" + m.first + "'");
                o.names.push_back(m.first);
                o.schema.push_back(0);  // compiled below, after the spec is stored
                o.required.push_back(0);
            }
        }
        if (const JsonValue* req = v.get("required")) {
            if (req->kind != JsonValue::Kind::Array) fail("'required' must be an array of strings");
            for (const auto& r : req->items) {
                if (r.kind != JsonValue::Kind::String) fail("'required' must be an array of strings");
                auto it = std::find(o.names.begin(), o.names.end(), r.text);
                if (it == o.names.end()) {
                    o.names.push_back(r.text);
                    o.schema.push_back(0);
                    o.required.push_back(1);
                } else {
                    o.required[static_cast<size_t>(it - o.names.begin())] = 1;
                }
            }
        }
        const JsonValue* props = v.get("properties");
        for (size_t j = 0; j < o.names.size(); ++j) {
            const JsonValue* ps = props ? props->get(o.names[j]) : nullptr;
            o.schema[j] = ps ? node_for(*ps) : any();
        }
        const JsonValue* add = v.get("additionalProperties");
        o.additional = static_cast<int32_t>(add ? node_for(*add) : any());
        s_.objects.push_back(std::move(o));
        return new_node(NodeKind::Object, static_cast<uint32_t>(s_.objects.size() - 1));
    }

    uint32_t array_node(const JsonValue& v) {
        ArraySpec a;
        const JsonValue* items = v.get("items");
        const JsonValue* prefix = v.get("prefixItems");
        const JsonValue* extra = v.get("additionalItems");
        if (prefix) {
            if (prefix->kind != JsonValue::Kind::Array) fail("'prefixItems' must be an array");
            if (items && items->kind == JsonValue::Kind::Array) fail("array-form 'items' together with 'prefixItems' is not supported");
            for (const auto& p : prefix->items) a.prefix.push_back(node_for(p));
        }
        if (items && items->kind == JsonValue::Kind::Array) {  // draft-7 tuple form
            for (const auto& p : items->items) a.prefix.push_back(node_for(p));
            a.items = static_cast<int32_t>(extra ? node_for(*extra) : any());
        } else {
            a.items = static_cast<int32_t>(items ? node_for(*items) : any());
        }
        if (const JsonValue* m = v.get("minItems")) a.min_items = count_arg(*m, "minItems");
        if (const JsonValue* m = v.get("maxItems")) a.max_items = count_arg(*m, "maxItems");
        s_.arrays.push_back(std::move(a));
        return new_node(NodeKind::Array, static_cast<uint32_t>(s_.arrays.size() - 1));
    }

    // "#", "#/$defs/Name", any JSON pointer into the document. One node per distinct
    // reference; it is created before its target is compiled, so recursion ends there.
    uint32_t ref_node(const std::string& ref) {
        auto it = refs_.find(ref);
        if (it != refs_.end()) return it->second;
        if (ref.empty() || ref[0] != '#' || !doc_)
            fail("$ref '" + ref + "' is not supported (only local references such as '#/$defs/Name')");
        const JsonValue* target = doc_;
        size_t pos = 1;
        while (pos < ref.size()) {
            if (ref[pos] != '/') fail("$ref '" + ref + "' is not a JSON pointer");
            size_t end = ref.find('/', pos + 1);
            if (end == std::string::npos) end = ref.size();
            std::string tok;
            for (size_t k = pos + 1; k < end; ++k) {
                if (ref[k] == '~' && k + 1 < end && (ref[k + 1] == '0' || ref[k + 1] == '1')) {
                    tok += ref[k + 1] == '0' ? '~' : '/';
                    ++k;
                } else {
                    tok += ref[k];
                }
            }
            const JsonValue* next = nullptr;
            if (target->is_object()) {
                next = target->get(tok);
            } else if (target->kind == JsonValue::Kind::Array && !tok.empty() &&
                       tok.find_first_not_of("0123456789") == std::string::npos && tok.size() < 9) {
                const size_t i = std::stoul(tok);
                if (i < target->items.size()) next = &target->items[i];
            }
            if (!next) fail("$ref '" + ref + "' does not resolve");
            target = next;
            pos = end;
        }
        const uint32_t id = new_union();
        refs_[ref] = id;
        const uint32_t n = node_for(*target);
        raw_unions_[s_.nodes[id].spec].push_back(n);
        return id;
    }

    // Least fixpoint: a node is satisfiable once some finite value of it is known to exist.
    void satisfiability() {
        for (bool changed = true; changed;) {
            changed = false;
            for (auto& n : s_.nodes) {
                if (n.satisfiable) continue;
                bool sat = false;
                switch (n.kind) {
                    case NodeKind::Number: sat = true; break;
                    case NodeKind::String: sat = s_.strings[n.spec].min_len <= s_.strings[n.spec].max_len; break;
                    case NodeKind::Literal: sat = s_.literals[n.spec].nodes.size() > 1; break;
                    case NodeKind::Object: {
                        const ObjectSpec& o = s_.objects[n.spec];
                        sat = true;
                        for (size_t j = 0; j < o.names.size(); ++j)
                            if (o.required[j] && !s_.nodes[o.schema[j]].satisfiable) sat = false;
                        break;
                    }
                    case NodeKind::Array: {
                        const ArraySpec& a = s_.arrays[n.spec];
                        sat = a.min_items <= a.max_items;
                        for (uint32_t i = 0; sat && i < a.min_items; ++i) {
                            if (i >= a.prefix.size() && a.items < 0) sat = false;
                            else sat = s_.nodes[a.item(i)].satisfiable;
                            if (i >= a.prefix.size()) break;  // the rest repeat `items`
                        }
                        break;
                    }
                    case NodeKind::Union:
                        for (uint32_t alt : raw_unions_[n.spec]) sat = sat || s_.nodes[alt].satisfiable;
                        break;
                }
                if (sat) n.satisfiable = changed = true;
            }
        }
    }

    void flatten_unions() {
        s_.unions.assign(raw_unions_.size(), {});
        for (const auto& n : s_.nodes) {
            if (n.kind != NodeKind::Union) continue;
            std::vector<uint32_t>& out = s_.unions[n.spec];
            std::vector<uint8_t> seen(raw_unions_.size(), 0);
            std::vector<uint32_t> todo{n.spec};
            seen[n.spec] = 1;
            while (!todo.empty()) {
                const uint32_t u = todo.back();
                todo.pop_back();
                for (uint32_t alt : raw_unions_[u]) {
                    const Node& a = s_.nodes[alt];
                    if (a.kind == NodeKind::Union) {
                        if (!seen[a.spec]) seen[a.spec] = 1, todo.push_back(a.spec);
                    } else if (a.satisfiable && std::find(out.begin(), out.end(), alt) == out.end()) {
                        out.push_back(alt);
                    }
                }
            }
            std::sort(out.begin(), out.end());
        }
    }

    // Greatest-to-least fixpoint from kUnbounded: every satisfiable node ends finite.
    void depth_needs() {
        auto need = [&](uint32_t node) { return s_.nodes[node].need; };
        auto plus1 = [](uint32_t x) { return x == kUnbounded ? kUnbounded : x + 1; };
        for (bool changed = true; changed;) {
            changed = false;
            for (auto& n : s_.nodes) {
                if (!n.satisfiable) continue;
                uint32_t v = kUnbounded;
                switch (n.kind) {
                    case NodeKind::String: case NodeKind::Number: case NodeKind::Literal: v = 1; break;
                    case NodeKind::Object: {
                        const ObjectSpec& o = s_.objects[n.spec];
                        uint32_t inner = 1;  // the key frame
                        for (size_t j = 0; j < o.names.size(); ++j)
                            if (o.required[j]) inner = std::max(inner, need(o.schema[j]));
                        v = plus1(inner);
                        break;
                    }
                    case NodeKind::Array: {
                        const ArraySpec& a = s_.arrays[n.spec];
                        uint32_t inner = 0;
                        for (uint32_t i = 0; i < a.min_items; ++i) {
                            inner = std::max(inner, need(a.item(i)));
                            if (i >= a.prefix.size()) break;  // the rest repeat `items`
                        }
                        v = plus1(inner);
                        break;
                    }
                    case NodeKind::Union:
                        for (uint32_t alt : s_.unions[n.spec]) v = std::min(v, need(alt));
                        break;
                }
                if (v < n.need) n.need = v, changed = true;
            }
        }
    }

    void first_sets() {
        for (auto& n : s_.nodes) {
            switch (n.kind) {
                case NodeKind::Object: n.first.set('{'); break;
                case NodeKind::Array: n.first.set('['); break;
                case NodeKind::String: n.first.set('"'); break;
                case NodeKind::Number:
                    n.first.set('-');
                    for (int c = '0'; c <= '9'; ++c) n.first.set(static_cast<size_t>(c));
                    break;
                case NodeKind::Literal: {
                    const SmallTrie& t = s_.literals[n.spec];
                    for (uint32_t e = 0; e < t.nodes[0].n_edges; ++e) n.first.set(t.edge_byte[e]);
                    break;
                }
                case NodeKind::Union: break;
            }
        }
        for (auto& n : s_.nodes)
            if (n.kind == NodeKind::Union)
                for (uint32_t alt : s_.unions[n.spec]) n.first |= s_.nodes[alt].first;
    }

    void finish_object(ObjectSpec& o) {
        const uint32_t n = static_cast<uint32_t>(o.names.size());
        o.usable.resize(n);
        for (uint32_t j = 0; j < n; ++j) o.usable[j] = s_.nodes[o.schema[j]].satisfiable;
        if (o.additional >= 0 && !s_.nodes[static_cast<uint32_t>(o.additional)].satisfiable) o.additional = -1;
        o.last_candidate.assign(n + 1, 0);
        o.closable.assign(n + 1, 1);
        o.key_possible.assign(n + 1, 0);
        uint32_t next_req = n;
        for (uint32_t p = n + 1; p-- > 0;) {
            if (p < n && o.required[p]) next_req = p;
            o.closable[p] = next_req == n;
            o.last_candidate[p] = next_req < n ? next_req : (n ? n - 1 : 0);
        }
        for (uint32_t p = 0; p <= n; ++p) {
            bool k = o.additional_ok(p);
            for (uint32_t j = p; !k && j < n && j <= o.last_candidate[p]; ++j) k = o.usable[j];
            o.key_possible[p] = k;
        }
        // The trie holds each name's canonical spelling (dump_string without the quotes): a key
        // matches a declared name only if spelled that way (see feed_key in json_grammar.cpp).
        std::vector<std::string> spelled(n);
        for (uint32_t j = 0; j < n; ++j) {
            dump_string(o.names[j], spelled[j]);
            spelled[j] = spelled[j].substr(1, spelled[j].size() - 2);
        }
        o.names_trie = SmallTrie::build(spelled);
        o.below.assign(o.names_trie.nodes.size(), {});
        for (uint32_t j = 0; j < n; ++j) {
            if (!o.usable[j]) continue;
            uint32_t t = 0;
            o.below[t].push_back(j);
            for (char c : spelled[j]) {
                t = static_cast<uint32_t>(o.names_trie.child(t, static_cast<uint8_t>(c)));
                o.below[t].push_back(j);
            }
        }
    }

    void finish_array(ArraySpec& a) {
        uint32_t cap = kUnbounded;
        for (uint32_t i = 0; i < a.prefix.size() && cap == kUnbounded; ++i)
            if (!s_.nodes[a.prefix[i]].satisfiable) cap = i;
        if (cap == kUnbounded && (a.items < 0 || !s_.nodes[static_cast<uint32_t>(a.items)].satisfiable))
            cap = static_cast<uint32_t>(a.prefix.size());
        a.max_items = std::min(a.max_items, cap);
    }

    Schema& s_;
    const JsonValue* doc_;
    std::vector<std::vector<uint32_t>> raw_unions_;
    std::map<std::string, uint32_t> refs_;
    int32_t any_ = -1;
    uint32_t any_object_ = 0;
};

}  // namespace

std::shared_ptr<const Schema> compile_schema(const JsonValue* schema) {
    auto s = std::make_shared<Schema>();
    Compiler c(*s, schema);
    const uint32_t root = schema ? c.node_for(*schema) : c.any_object();
    c.finalize(root);
    return s;
}

std::shared_ptr<const Schema> compile_schema_text(std::string_view json_text) {
    if (json_text.empty()) return compile_schema(nullptr);
    const JsonValue doc = parse_json(json_text);
    return compile_schema(&doc);
}

}  // namespace unigemma::grammar
