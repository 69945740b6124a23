// Shared tokenizer parts: reading the common tokenizer.ggml.* keys, the exact-string lookup,
// special-token splitting, byte fallback, detokenization and the end-of-generation set.
// Model-specific BPE lives in bpe_gemma4.cpp ("gemma4") and spm_llama.cpp ("llama").
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <unordered_map>

#include "base/error.h"
#include "tokenizer/tokenizer_models.h"

namespace unigemma::tokenizer {

using gguf::GGUFFile;
using gguf::Value;
using gguf::ValueType;

namespace {

[[noreturn]] void bad_key(const std::string& key, const std::string& what) {
    throw GGUFError("[tokenizer] key '" + key + "': " + what);
}

}  // namespace

const Value& required_array(const GGUFFile& f, const std::string& key, ValueType elem, const char* elem_name) {
    const Value* v = f.find(key);
    if (!v) throw GGUFError("[tokenizer] missing required key '" + key + "'");
    if (v->type != ValueType::ARRAY || v->elem_type != elem) bad_key(key, std::string("expected ARRAY[") + elem_name + "]");
    return *v;
}

// text -> id over all vocab strings (views into tokens_, which never change after loading), and
// a byte trie of the texts split_special() matches. Trie node 0 is the root; `next` holds the
// children sorted by byte; `id` >= 0 marks the end of a matchable token text.
struct Tokenizer::Impl {
    std::unordered_map<std::string_view, int32_t> by_text;
    struct Node {
        std::map<uint8_t, int32_t> next;
        int32_t id = -1;
    };
    std::vector<Node> trie;
};

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GGUFFile& f) {
    const std::string key = "tokenizer.ggml.model";
    const Value* v = f.find(key);
    if (!v) throw GGUFError("[tokenizer] missing required key '" + key + "'");
    if (v->type != ValueType::STRING) bad_key(key, std::string("expected STRING, got ") + gguf::value_type_name(v->type));
    std::unique_ptr<Tokenizer> t;
    try {
        if (v->str == "gemma4") t = make_gemma4_bpe(f);
        else if (v->str == "llama") t = make_llama_spm(f);
    } catch (const Error&) {
        f.check_intact();  // an error caused by zeros read past a truncation: report that instead
        throw;
    }
    if (t) {
        // the vocabulary was copied out of the mapping: zeros read past a truncation would
        // otherwise become a silently wrong vocabulary
        f.check_intact();
        return t;
    }
    bad_key(key, "unsupported tokenizer model '" + std::string(v->str) + "' (supported: gemma4, llama)");
}

size_t Tokenizer::utf8_len(std::string_view s, size_t pos) {
    const auto b = [&](size_t k) { return static_cast<uint8_t>(s[pos + k]); };
    const uint8_t c = b(0);
    size_t n;
    uint32_t cp;
    if (c < 0x80) return 1;
    else if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
    else return 1;  // continuation byte, overlong lead C0/C1, or F5..FF
    if (pos + n > s.size()) return 1;
    for (size_t k = 1; k < n; ++k) {
        if ((b(k) & 0xC0) != 0x80) return 1;
        cp = (cp << 6) | (b(k) & 0x3F);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 1;
    return n;
}

void Tokenizer::load_common(const GGUFFile& f) {
    const std::string k_tokens = "tokenizer.ggml.tokens";
    const Value* tv = &required_array(f, k_tokens, ValueType::STRING, "STRING");
    if (tv->strings.empty()) bad_key(k_tokens, "empty vocabulary");
    if (tv->strings.size() > static_cast<size_t>(INT32_MAX)) bad_key(k_tokens, "vocabulary too large");
    tokens_.assign(tv->strings.begin(), tv->strings.end());
    const size_t n = tokens_.size();

    // token_type is optional (llama.cpp treats a file without it as all-normal)
    types_.assign(n, TokenType::Normal);
    const std::string k_types = "tokenizer.ggml.token_type";
    if (const Value* ty = f.find(k_types)) {
        if (ty->type != ValueType::ARRAY || ty->elem_type != ValueType::INT32) bad_key(k_types, "expected ARRAY[INT32]");
        if (ty->count != n)
            bad_key(k_types, "has " + std::to_string(ty->count) + " entries, the vocabulary " + std::to_string(n));
        for (size_t i = 0; i < n; ++i) {
            int32_t t;
            std::memcpy(&t, ty->elems + 4 * i, 4);
            if (t < 0 || t > 6) bad_key(k_types, "token " + std::to_string(i) + " has unknown type " + std::to_string(t));
            types_[i] = static_cast<TokenType>(t);
        }
    }

    const auto opt_id = [&](const std::string& key) -> int32_t {
        if (!f.find(key)) return -1;
        uint64_t id = f.get_uint(key);
        if (id >= n) bad_key(key, "id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(n));
        return static_cast<int32_t>(id);
    };
    bos_ = opt_id("tokenizer.ggml.bos_token_id");
    eos_ = opt_id("tokenizer.ggml.eos_token_id");
    unk_ = opt_id("tokenizer.ggml.unknown_token_id");
    add_bos_ = f.find("tokenizer.ggml.add_bos_token") ? f.get_bool("tokenizer.ggml.add_bos_token") : true;
    if (add_bos_ && bos_ < 0)
        throw GGUFError("[tokenizer] missing required key 'tokenizer.ggml.bos_token_id' (add_bos_token is set)");

    auto impl = std::make_shared<Impl>();
    impl->by_text.reserve(n * 2);
    for (size_t i = 0; i < n; ++i) impl->by_text[tokens_[i]] = static_cast<int32_t>(i);
    impl->trie.emplace_back();
    for (size_t i = 0; i < n; ++i) {
        const TokenType t = types_[i];
        if (t != TokenType::Control && t != TokenType::UserDefined && t != TokenType::Unknown) continue;
        if (tokens_[i].empty()) continue;
        int32_t node = 0;
        for (unsigned char c : tokens_[i]) {
            auto it = impl->trie[node].next.find(c);
            if (it == impl->trie[node].next.end()) {
                impl->trie.emplace_back();
                const int32_t child = static_cast<int32_t>(impl->trie.size() - 1);
                impl->trie[node].next.emplace(c, child);
                node = child;
            } else {
                node = it->second;
            }
        }
        impl->trie[node].id = static_cast<int32_t>(i);
    }
    impl_ = std::move(impl);

    for (int b = 0; b < 256; ++b) {
        static const char* hex = "0123456789ABCDEF";
        const char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        byte_tokens_[b] = lookup(std::string_view(buf, 6));
    }

    eog_.clear();
    if (eos_ >= 0) eog_.push_back(eos_);
    for (const char* text : {"<eos>", "<end_of_turn>", "<turn|>", "<|tool_response>"}) {
        const int32_t id = lookup(text);
        if (id >= 0 && std::find(eog_.begin(), eog_.end(), id) == eog_.end()) eog_.push_back(id);
    }
}

int32_t Tokenizer::lookup(std::string_view s) const {
    auto it = impl_->by_text.find(s);
    return it == impl_->by_text.end() ? -1 : it->second;
}

int32_t Tokenizer::find_token(std::string_view text) const { return lookup(text); }

const std::string& Tokenizer::token_text(int32_t id) const {
    if (id < 0 || id >= n_vocab())
        throw InputError("[tokenizer] token id " + std::to_string(id) + " is outside the vocabulary of " +
                         std::to_string(n_vocab()));
    return tokens_[static_cast<size_t>(id)];
}

TokenType Tokenizer::token_type(int32_t id) const {
    token_text(id);  // range check
    return types_[static_cast<size_t>(id)];
}

bool Tokenizer::is_eog(int32_t id) const { return std::find(eog_.begin(), eog_.end(), id) != eog_.end(); }

std::vector<Tokenizer::Fragment> Tokenizer::split_special(std::string_view text, bool parse_special) const {
    std::vector<Fragment> out;
    const auto& trie = impl_->trie;
    size_t plain = 0;  // start of the pending plain-text span
    size_t i = 0;
    while (i < text.size()) {
        int32_t node = 0, best_id = -1;
        size_t best_len = 0;
        for (size_t j = i; j < text.size(); ++j) {
            auto it = trie[node].next.find(static_cast<uint8_t>(text[j]));
            if (it == trie[node].next.end()) break;
            node = it->second;
            const int32_t id = trie[node].id;
            if (id >= 0 && (parse_special || types_[id] == TokenType::UserDefined)) {
                best_id = id;
                best_len = j - i + 1;
            }
        }
        if (best_id < 0) {
            ++i;
            continue;
        }
        if (i > plain) out.push_back({-1, text.substr(plain, i - plain)});
        out.push_back({best_id, {}});
        i += best_len;
        plain = i;
    }
    if (plain < text.size()) out.push_back({-1, text.substr(plain)});
    return out;
}

void Tokenizer::push_bytes(std::string_view s, std::vector<int32_t>& out) const {
    for (unsigned char c : s) {
        const int32_t id = byte_tokens_[c];
        if (id >= 0) out.push_back(id);
        else if (unk_ >= 0) out.push_back(unk_);
    }
}

// Pieces by type: normal (and undefined) tokens with U+2581 -> ' '; byte tokens -> the raw
// byte; user-defined tokens verbatim; control, unknown and unused tokens -> "" unless
// `special`, then their text verbatim.
std::string Tokenizer::token_to_piece(int32_t id, bool special) const {
    const std::string& text = token_text(id);
    switch (types_[static_cast<size_t>(id)]) {
        case TokenType::Byte:
            if (text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>') {
                const auto hexval = [](char c) -> int {
                    if (c >= '0' && c <= '9') return c - '0';
                    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
                    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
                    return -1;
                };
                const int hi = hexval(text[3]), lo = hexval(text[4]);
                if (hi >= 0 && lo >= 0) return std::string(1, static_cast<char>(hi * 16 + lo));
            }
            return text;  // a byte-typed token not spelled <0xNN>: printed as is
        case TokenType::UserDefined:
            return text;
        case TokenType::Control:
        case TokenType::Unknown:
        case TokenType::Unused:
            return special ? text : std::string();
        case TokenType::Normal:
        case TokenType::Undefined:
            break;
    }
    std::string out;
    out.reserve(text.size());
    static const char kSpace[] = "\xE2\x96\x81";  // U+2581
    for (size_t i = 0; i < text.size();) {
        if (text.compare(i, 3, kSpace) == 0) {
            out.push_back(' ');
            i += 3;
        } else {
            out.push_back(text[i++]);
        }
    }
    return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool special) const {
    std::string out;
    for (int32_t id : ids) out += token_to_piece(id, special);
    return out;
}

}  // namespace unigemma::tokenizer
