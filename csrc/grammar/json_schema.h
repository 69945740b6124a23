// JSON schemas for constrained decoding: a small JSON DOM (the schema arrives as JSON text) and
// the compiler from a schema to the node graph the byte-level matcher (json_grammar.h) walks.
//
// Supported subset (anything else throws InputError "[json_schema] keyword 'X' is not supported"):
//   type (one or a list), properties, required, additionalProperties (false / true / schema;
//   absent: any value), enum, const, items (schema, false, or the draft-7 array form with
//   additionalItems), prefixItems, minItems, maxItems, minLength, maxLength, anyOf, oneOf
//   (generated like anyOf: the alternatives should not overlap), allOf with one element,
//   $ref to "#", "#/$defs/..." or "#/definitions/..." (recursion allowed), boolean schemas.
//   Annotations are ignored: title, description, default, examples, $schema, $id, $comment,
//   deprecated, readOnly, writeOnly, discriminator, contentMediaType, contentEncoding, $defs,
//   definitions.
// Choices (the generated text is a subset of what the schema accepts):
//   - object properties appear in the order of `properties` (each optional one may be skipped,
//     each required one must appear); keys required but not listed in `properties` follow them
//     (schema: any value); additional keys (when allowed) may follow once no required key is
//     left and never equal a declared name (before they differ from every declared name they
//     take no backslash escapes, so an escaped spelling cannot smuggle a declared name in).
//   - enum / const values must be spelled canonically: compact (no whitespace), strings with
//     the short escapes \" \\ \n \r \t \b \f and \u00XX for other control characters,
//     non-ASCII as raw UTF-8, numbers as written in the schema text.
//   - numbers: at most 16 integer digits, 16 fraction digits, 3 exponent digits; "integer"
//     allows no fraction or exponent.
//   - string lengths count code points (an escaped surrogate pair is one).
// Dialect::Gemma4Tool compiles the same subset for Gemma 4's tool-call syntax instead (bare
// dictsorted keys, `<|"|>`-delimited raw strings, declared keys only, an object at the top,
// no whitespace): the rules are in tool_dialect.h. Its errors say "[tool_schema]".
#pragma once
#include <bitset>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace unigemma::grammar {

struct JsonValue {
    enum class Kind : uint8_t { Null, Bool, Number, String, Array, Object };
    Kind kind = Kind::Null;
    bool boolean = false;
    std::string text;  // String: the decoded UTF-8 value; Number: the literal as written
    std::vector<JsonValue> items;                            // Array
    std::vector<std::pair<std::string, JsonValue>> members;  // Object, in document order

    const JsonValue* get(std::string_view key) const;  // Object member (last duplicate), or null
    bool is_object() const { return kind == Kind::Object; }
};

// Strict RFC 8259 parse (nesting depth <= 256); throws InputError "[json_schema] invalid JSON ...".
JsonValue parse_json(std::string_view text);
// Canonical compact serialization (see the enum / const rule above).
std::string dump_json(const JsonValue& v);
// Appends s as a canonical JSON string literal, quotes included.
void dump_json_string(const std::string& s, std::string& out);

// Byte trie over a few strings (enum literals, property names): edges of a node are contiguous
// and sorted by byte.
struct SmallTrie {
    struct Node {
        uint32_t first_edge = 0, n_edges = 0;
        int32_t value = -1;  // index of the string ending here, -1 if none
    };
    std::vector<Node> nodes;  // nodes[0]: root
    std::vector<uint8_t> edge_byte;
    std::vector<uint32_t> edge_child;

    static SmallTrie build(const std::vector<std::string>& strs);  // strs must be distinct
    int32_t child(uint32_t node, uint8_t c) const {
        const Node& n = nodes[node];
        for (uint32_t e = n.first_edge; e < n.first_edge + n.n_edges; ++e)
            if (edge_byte[e] == c) return static_cast<int32_t>(edge_child[e]);
        return -1;
    }
};

constexpr uint32_t kUnbounded = std::numeric_limits<uint32_t>::max();

enum class Dialect : uint8_t { Json, Gemma4Tool };

enum class NodeKind : uint8_t { Object, Array, String, Number, Literal, Union };

struct ObjectSpec {
    // Declared keys: `properties` order, then required-only ones (Gemma4Tool: all of them in
    // dictsort order, the order the keys are generated in).
    std::vector<std::string> names;
    std::vector<uint32_t> schema;     // value node per declared key
    std::vector<uint8_t> required;
    std::vector<uint8_t> usable;      // 0: the value schema is unsatisfiable (the key never appears)
    int32_t additional = -1;          // value node of additional keys, -1: none allowed
    // For a position p (the next declared key that may appear): last_candidate[p] is the last
    // declared index the next key may take (the first required one at or after p, else n-1);
    // closable[p]: no required key left; key_possible[p]: some key may follow (before the
    // matcher's depth check).
    std::vector<uint32_t> last_candidate;
    std::vector<uint8_t> closable, key_possible;
    SmallTrie names_trie;
    // Per names_trie node: the usable declared indices whose name passes through it, ascending.
    std::vector<std::vector<uint32_t>> below;

    bool additional_ok(uint32_t p) const { return additional >= 0 && closable[p]; }
};

struct ArraySpec {
    std::vector<uint32_t> prefix;  // prefixItems
    int32_t items = -1;            // node of the items after the prefix, -1: none
    uint32_t min_items = 0;
    uint32_t max_items = kUnbounded;  // already capped where the item schemas stop (unsatisfiable / absent)
    uint32_t item(uint32_t i) const { return i < prefix.size() ? prefix[i] : static_cast<uint32_t>(items); }
};

struct StringSpec {
    uint32_t min_len = 0, max_len = kUnbounded;
};

struct Node {
    NodeKind kind = NodeKind::Union;
    uint32_t spec = 0;        // index into the kind's spec vector; Number: 1 = integer only
    bool satisfiable = false;
    // Fewest matcher frames a value of this node needs on the stack at once (its own frame,
    // plus a key or the deepest required part), kUnbounded if unsatisfiable. The matcher opens
    // a value, key or array item only where this fits under its depth limit, so nothing it
    // starts can get stuck there.
    uint32_t need = kUnbounded;
    std::bitset<256> first;   // bytes a value of this node can start with (Gemma4Tool strings: kToolQuote)
};

struct Schema {
    std::vector<Node> nodes;
    std::vector<ObjectSpec> objects;
    std::vector<ArraySpec> arrays;
    std::vector<StringSpec> strings;
    std::vector<SmallTrie> literals;
    std::vector<std::vector<uint32_t>> unions;  // flattened: satisfiable, non-union alternatives
    uint32_t root = 0;
    Dialect dialect = Dialect::Json;
};

// Compiles a schema; null: any JSON object (OpenAI's json_object mode). Throws InputError on
// bad or unsupported schemas and on schemas no value satisfies.
std::shared_ptr<const Schema> compile_schema(const JsonValue* schema, Dialect dialect = Dialect::Json);
std::shared_ptr<const Schema> compile_schema_text(std::string_view json_text,  // "" = null
                                                  Dialect dialect = Dialect::Json);

// Appends code point cp (<= 0x10FFFF) as UTF-8 (json_value.cpp).
void append_utf8(std::string& out, uint32_t cp);

}  // namespace unigemma::grammar
