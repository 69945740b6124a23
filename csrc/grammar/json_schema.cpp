#include "grammar/json_schema.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "base/error.h"
#include "grammar/tool_dialect.h"

namespace unigemma::grammar {

namespace {

[[noreturn]] void fail(const std::string& msg) { throw InputError("[json_schema] " + msg); }

// ---- compilation --------------------------------------------------------------------------

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
    Compiler(Schema& s, const JsonValue* doc) : s_(s), doc_(doc), tool_(s.dialect == Dialect::Gemma4Tool) {}

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
                std::string d;
                if (!tool_) d = dump_json(e);
                else if (!dump_tool_value(e, d)) return;  // not writable in the dialect: left out
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
        if (tool_) tool_root();
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
        if (tool_) {  // bare keys, generated in dictsort order
            for (const auto& name : o.names)
                if (const char* why = bare_key_problem(name))
                    fail("property name '" + name + "' cannot be written as a bare key: " + why);
            ObjectSpec sorted;
            for (uint32_t j : dictsort_order(o.names)) {
                sorted.names.push_back(o.names[j]);
                sorted.schema.push_back(0);
                sorted.required.push_back(o.required[j]);
            }
            o = std::move(sorted);
        }
        const JsonValue* props = v.get("properties");
        for (size_t j = 0; j < o.names.size(); ++j) {
            const JsonValue* ps = props ? props->get(o.names[j]) : nullptr;
            o.schema[j] = ps ? node_for(*ps) : any();
        }
        const JsonValue* add = v.get("additionalProperties");
        if (tool_) o.additional = -1;  // the dialect generates declared keys only
        else o.additional = static_cast<int32_t>(add ? node_for(*add) : any());
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
                case NodeKind::String: n.first.set(tool_ ? kToolQuote : '"'); break;
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
        if (tool_) o.additional = -1;  // declared keys only (also in the any-value object)
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
        // Gemma4Tool: the bare name itself.
        std::vector<std::string> spelled(n);
        for (uint32_t j = 0; j < n; ++j) {
            if (tool_) {
                spelled[j] = o.names[j];
                continue;
            }
            dump_json_string(o.names[j], spelled[j]);
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

    // Gemma4Tool: the generated value is the call's argument object. A union root keeps its
    // object alternatives (one: that object itself); anything else is an error.
    void tool_root() {
        const Node& r = s_.nodes[s_.root];
        if (r.kind == NodeKind::Object) return;
        std::vector<uint32_t> objs;
        if (r.kind == NodeKind::Union)
            for (uint32_t alt : s_.unions[r.spec])
                if (s_.nodes[alt].kind == NodeKind::Object) objs.push_back(alt);
        if (objs.empty()) fail("the parameters schema must describe an object");
        if (objs.size() == 1) {
            s_.root = objs[0];
            return;
        }
        Node u;
        u.kind = NodeKind::Union;
        u.spec = static_cast<uint32_t>(s_.unions.size());
        u.satisfiable = true;
        for (uint32_t alt : objs) u.need = std::min(u.need, s_.nodes[alt].need);
        u.first.set('{');
        s_.unions.push_back(std::move(objs));
        s_.nodes.push_back(u);
        s_.root = static_cast<uint32_t>(s_.nodes.size() - 1);
    }

    Schema& s_;
    const JsonValue* doc_;
    bool tool_;
    std::vector<std::vector<uint32_t>> raw_unions_;
    std::map<std::string, uint32_t> refs_;
    int32_t any_ = -1;
    uint32_t any_object_ = 0;
};

}  // namespace

std::shared_ptr<const Schema> compile_schema(const JsonValue* schema, Dialect dialect) {
    auto s = std::make_shared<Schema>();
    s->dialect = dialect;
    try {
        Compiler c(*s, schema);
        const uint32_t root = schema ? c.node_for(*schema) : c.any_object();
        c.finalize(root);
    } catch (const InputError& e) {
        if (dialect != Dialect::Gemma4Tool) throw;
        std::string msg = e.what();  // the same errors, named after the tool-call compile
        const std::string_view from = "[json_schema]";
        if (msg.compare(0, from.size(), from) == 0) msg = "[tool_schema]" + msg.substr(from.size());
        throw InputError(msg);
    }
    return s;
}

std::shared_ptr<const Schema> compile_schema_text(std::string_view json_text, Dialect dialect) {
    if (json_text.empty()) return compile_schema(nullptr, dialect);
    const JsonValue doc = parse_json(json_text);
    return compile_schema(&doc, dialect);
}

}  // namespace unigemma::grammar
