#include "grammar/token_vocab.h"

#include <algorithm>

#include "base/error.h"
#include "grammar/tool_dialect.h"

namespace unigemma::grammar {

namespace {

// Length of the valid UTF-8 character at s[k] (shortest form, no surrogates, <= U+10FFFF), 0 if
// the bytes there do not start one.
size_t utf8_char(std::string_view s, size_t k) {
    const uint8_t c = static_cast<uint8_t>(s[k]);
    if (c < 0x80) return 1;
    size_t n;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    if (k + n > s.size()) return 0;
    for (size_t i = 1; i < n; ++i) {
        const uint8_t d = static_cast<uint8_t>(s[k + i]);
        if (d < (i == 1 ? lo : 0x80) || d > (i == 1 ? hi : 0xBF)) return 0;
    }
    return n;
}

}  // namespace

TokenVocab::TokenVocab(const std::vector<std::string>& pieces, const std::vector<uint8_t>& usable,
                       std::vector<int32_t> eog, int32_t delimiter)
    : eog_(std::move(eog)), delimiter_(delimiter) {
    const size_t n = pieces.size();
    if (usable.size() != n) throw InputError("[token_vocab] usable flags and pieces differ in length");
    if (delimiter_ < -1 || delimiter_ >= static_cast<int64_t>(n))
        throw InputError("[token_vocab] delimiter id " + std::to_string(delimiter_) + " out of range");
    const std::string quote(1, static_cast<char>(kToolQuote));
    auto piece_in = [&](size_t i) -> const std::string& {
        return static_cast<int64_t>(i) == delimiter_ ? quote : pieces[i];
    };
    offs_.resize(n + 1);
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) total += piece_in(i).size();
    bytes_.reserve(total);
    for (size_t i = 0; i < n; ++i) {
        offs_[i] = static_cast<uint32_t>(bytes_.size());
        bytes_ += piece_in(i);
    }
    offs_[n] = static_cast<uint32_t>(bytes_.size());
    for (int32_t e : eog_)
        if (e < 0 || static_cast<size_t>(e) >= n) throw InputError("[token_vocab] EOG id " + std::to_string(e) + " out of range");
    if (delimiter_ >= 0 && is_eog(delimiter_)) throw InputError("[token_vocab] the delimiter token is an EOG token");

    for (size_t i = 0; i < n; ++i) {
        const int32_t id = static_cast<int32_t>(i);
        bool ok = usable[i] && !pieces[i].empty() && !is_eog(id);
        if (delimiter_ >= 0) ok = id == delimiter_ || (ok && piece(id).find(quote) == std::string_view::npos);
        if (ok) order_.push_back(id);
    }
    std::sort(order_.begin(), order_.end(), [&](int32_t a, int32_t b) {
        const int c = piece(a).compare(piece(b));
        return c < 0 || (c == 0 && a < b);
    });
    rank_of_.assign(n, -1);
    for (size_t r = 0; r < order_.size(); ++r) rank_of_[static_cast<size_t>(order_[r])] = static_cast<int32_t>(r);
    chars_.resize(order_.size());
    for (size_t r = 0; r < order_.size(); ++r) {
        size_t k = 0;
        for (char ch : piece(order_[r])) k += (static_cast<uint8_t>(ch) & 0xC0) != 0x80;
        chars_[r] = static_cast<uint8_t>(std::min<size_t>(k, 255));
    }

    // Per token and byte offset k: the plain-content character count of piece[k..], or kNotPlain
    // (see Node::plain_chars), filled from the right; suf_raw: the same for Node::raw_chars.
    std::vector<uint32_t> suf_off(order_.size() + 1);
    for (size_t r = 0; r < order_.size(); ++r) suf_off[r + 1] = suf_off[r] + static_cast<uint32_t>(piece(order_[r]).size());
    std::vector<uint8_t> suf(suf_off.back()), suf_raw(suf_off.back());
    auto count = [](size_t len, uint8_t rest) {
        return (len == 0 || rest == kNotPlain) ? kNotPlain : static_cast<uint8_t>(std::min<int>(rest + 1, 254));
    };
    for (size_t r = 0; r < order_.size(); ++r) {
        const std::string_view p = piece(order_[r]);
        uint8_t* out = suf.data() + suf_off[r];
        uint8_t* raw = suf_raw.data() + suf_off[r];
        for (size_t k = p.size(); k-- > 0;) {
            const uint8_t c = static_cast<uint8_t>(p[k]);
            const size_t len_raw = p.compare(k, kToolQuoteText.size(), kToolQuoteText) == 0 ? 0 : utf8_char(p, k);
            const size_t len = (c >= 0x20 && c != '"' && c != '\\') ? utf8_char(p, k) : 0;
            out[k] = count(len, k + len >= p.size() ? 0 : (len ? out[k + len] : kNotPlain));
            raw[k] = count(len_raw, k + len_raw >= p.size() ? 0 : (len_raw ? raw[k + len_raw] : kNotPlain));
        }
    }

    // Breadth-first construction over rank ranges sharing a prefix of length `depth`.
    std::vector<uint32_t> depth_of{0};
    nodes_.emplace_back();
    nodes_[0].tok_begin = 0;
    nodes_[0].tok_end = static_cast<uint32_t>(order_.size());
    for (size_t i = 0; i < nodes_.size(); ++i) {
        const uint32_t depth = depth_of[i];
        uint32_t lo = nodes_[i].tok_begin;
        const uint32_t hi = nodes_[i].tok_end;
        while (lo < hi && piece(order_[lo]).size() == depth) ++lo;
        if (lo - nodes_[i].tok_begin > 0xFFFF) throw InputError("[token_vocab] too many tokens with identical bytes");
        nodes_[i].n_end = static_cast<uint16_t>(lo - nodes_[i].tok_begin);
        nodes_[i].child_begin = static_cast<uint32_t>(nodes_.size());
        uint32_t kids = 0;
        while (lo < hi) {
            const uint8_t c = static_cast<uint8_t>(piece(order_[lo])[depth]);
            uint32_t end = lo;
            uint8_t plain = 0, raw = 0;
            auto merge = [](uint8_t acc, uint8_t s) { return (acc == kNotPlain || s == kNotPlain) ? kNotPlain : std::max(acc, s); };
            while (end < hi && static_cast<uint8_t>(piece(order_[end])[depth]) == c) {
                plain = merge(plain, suf[suf_off[end] + depth]);
                raw = merge(raw, suf_raw[suf_off[end] + depth]);
                ++end;
            }
            Node child;
            child.byte = c;
            child.tok_begin = lo;
            child.tok_end = end;
            child.plain_chars = plain;
            child.raw_chars = raw;
            nodes_.push_back(child);
            depth_of.push_back(depth + 1);
            ++kids;
            lo = end;
        }
        nodes_[i].n_children = static_cast<uint16_t>(kids);  // at most 256
    }
}

bool TokenVocab::is_eog(int32_t id) const { return std::find(eog_.begin(), eog_.end(), id) != eog_.end(); }

size_t TokenVocab::memory_bytes() const {
    return bytes_.capacity() + offs_.capacity() * 4 + order_.capacity() * 4 + rank_of_.capacity() * 4 + chars_.capacity() +
           nodes_.capacity() * sizeof(Node);
}

std::shared_ptr<const TokenVocab> TokenVocab::from_tokenizer(const tokenizer::Tokenizer& t) {
    using tokenizer::TokenType;
    const int32_t n = t.n_vocab();
    std::vector<std::string> pieces(static_cast<size_t>(n));
    std::vector<uint8_t> usable(static_cast<size_t>(n), 0);
    for (int32_t i = 0; i < n; ++i) {
        const TokenType ty = t.token_type(i);
        if (ty == TokenType::Control || ty == TokenType::Unknown || ty == TokenType::Unused) continue;
        std::string p = t.token_to_piece(i, false);
        bool ok = !p.empty();
        if (ty == TokenType::UserDefined)
            ok = ok && p.find_first_not_of(" \t\n\r") == std::string::npos;
        usable[static_cast<size_t>(i)] = ok;
        pieces[static_cast<size_t>(i)] = std::move(p);
    }
    const int32_t quote = t.find_token(kToolQuoteText);
    return std::make_shared<const TokenVocab>(pieces, usable, t.eog_ids(), quote >= 0 && !t.is_eog(quote) ? quote : -1);
}

}  // namespace unigemma::grammar
