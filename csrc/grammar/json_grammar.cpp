#include "grammar/json_grammar.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <tuple>

#include "base/error.h"
#include "grammar/tool_dialect.h"

namespace unigemma::grammar {

namespace {

enum FrameKind : uint8_t { K_ROOT, K_OBJECT, K_ARRAY, K_STRING, K_KEY, K_NUMBER, K_LITERAL };
// Root: before the value (whitespace allowed), value frame above, value complete.
enum : uint8_t { R_BEFORE, R_IN, R_DONE };
// Object: expects '{'; after '{'; after ','; key frame above; after the key (expects ':');
// after ':' (expects the value); value frame above; after a value (',' or '}').
enum : uint8_t { O_OPEN, O_FIRST, O_NEXT_KEY, O_IN_KEY, O_AFTER_KEY, O_VALUE, O_IN_VALUE, O_AFTER_VALUE };
// Array: expects '['; after '['; after ','; item frame above; after an item.
enum : uint8_t { A_OPEN, A_FIRST, A_NEXT, A_IN_ITEM, A_AFTER };
// String / Key: expects the opening quote (Key frames start after it); inside.
enum : uint8_t { S_OPEN, S_BODY };
// Number: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?; ZERO, INT, FRAC, EXP may end.
enum : uint8_t { N_START, N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

constexpr uint32_t kDiverged = std::numeric_limits<uint32_t>::max();
constexpr uint32_t kAdditional = std::numeric_limits<uint32_t>::max();
constexpr uint32_t kMaxIntDigits = 16, kMaxFracDigits = 16, kMaxExpDigits = 3;

// String sub-state (Frame::b of String / Key frames):
//   bits 0-3  escape: 0 none; 1 after '\'; 2-5 reading hex digit 1-4 of "\u"; 6 after a high
//             surrogate, expecting '\'; 7 expecting 'u'; 8-11 hex digit 1-4 of the low surrogate
//   bits 4-5  UTF-8 continuation bytes still expected
//   bits 6-8  range of the next continuation byte: 0 80-BF, 1 A0-BF (after E0), 2 80-9F (ED),
//             3 90-BF (F0), 4 80-8F (F4)
//   bits 16-31 the hex value read so far
struct StrState {
    uint32_t esc, cont, cls, val;
    explicit StrState(uint32_t b) : esc(b & 15), cont((b >> 4) & 3), cls((b >> 6) & 7), val(b >> 16) {}
    uint32_t pack() const { return esc | (cont << 4) | (cls << 6) | (val << 16); }
};
inline bool at_char_boundary(uint32_t b) { return (b & 0x3F) == 0; }

enum BodyRes { B_FAIL, B_CLOSE, B_MID, B_CHAR };

int hex_digit(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// One byte of string content: B_CLOSE for the closing quote (state untouched), B_CHAR when the
// byte completes a character, B_MID when one is still open.
BodyRes string_body(uint32_t& b, uint8_t c) {
    StrState s(b);
    if (s.cont) {
        static const uint8_t lo[5] = {0x80, 0xA0, 0x80, 0x90, 0x80}, hi[5] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};
        if (c < lo[s.cls] || c > hi[s.cls]) return B_FAIL;
        --s.cont;
        s.cls = 0;
        b = s.pack();
        return s.cont ? B_MID : B_CHAR;
    }
    BodyRes r = B_MID;
    switch (s.esc) {
        case 0:
            if (c == '"') return B_CLOSE;
            if (c == '\\') {
                s.esc = 1;
            } else if (c < 0x20) {
                return B_FAIL;
            } else if (c < 0x80) {
                return B_CHAR;
            } else if (c >= 0xC2 && c <= 0xDF) {
                s.cont = 1;
            } else if (c >= 0xE0 && c <= 0xEF) {
                s.cont = 2;
                s.cls = c == 0xE0 ? 1 : c == 0xED ? 2 : 0;
            } else if (c >= 0xF0 && c <= 0xF4) {
                s.cont = 3;
                s.cls = c == 0xF0 ? 3 : c == 0xF4 ? 4 : 0;
            } else {
                return B_FAIL;
            }
            break;
        case 1:
            if (c == 'u') {
                s.esc = 2;
                s.val = 0;
            } else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') {
                s.esc = 0;
                r = B_CHAR;
            } else {
                return B_FAIL;
            }
            break;
        case 2: case 3: case 4: case 5: {
            const int h = hex_digit(c);
            if (h < 0) return B_FAIL;
            s.val = s.val * 16 + static_cast<uint32_t>(h);
            const uint32_t k = s.esc - 1;  // digits read
            if (k == 2 && s.val >= 0xDC && s.val <= 0xDF) return B_FAIL;  // a lone low surrogate
            if (k < 4) {
                ++s.esc;
            } else if (s.val >= 0xD800 && s.val <= 0xDBFF) {
                s.esc = 6;
            } else {
                s.esc = 0;
                r = B_CHAR;
            }
            break;
        }
        case 6:
            if (c != '\\') return B_FAIL;
            s.esc = 7;
            break;
        case 7:
            if (c != 'u') return B_FAIL;
            s.esc = 8;
            s.val = 0;
            break;
        default: {  // 8-11: the low surrogate, DC00-DFFF
            const int h = hex_digit(c);
            if (h < 0) return B_FAIL;
            s.val = s.val * 16 + static_cast<uint32_t>(h);
            const uint32_t k = s.esc - 7;
            if ((k == 1 && s.val != 0xD) || (k == 2 && (s.val < 0xDC || s.val > 0xDF))) return B_FAIL;
            if (k < 4) {
                ++s.esc;
            } else {
                s.esc = 0;
                r = B_CHAR;
            }
        }
    }
    b = s.pack();
    return r;
}

inline bool is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

using Journal = std::vector<std::pair<uint32_t, Frame>>;

// Depth-aware key rules for an object frame at stack size `s` (itself included). A value for
// declared key j or an additional key opens at s + 1, so it fits if s + need <= kMaxDepth;
// required keys always fit (the object opened only where its own need fitted).
inline bool fits(const Schema& sc, size_t s, uint32_t node) {
    const uint32_t need = sc.nodes[node].need;
    return need != kUnbounded && s + need <= JsonMatcher::kMaxDepth;
}
inline bool additional_fits(const Schema& sc, const ObjectSpec& o, uint32_t p, size_t s) {
    return o.additional_ok(p) && fits(sc, s, static_cast<uint32_t>(o.additional));
}
inline bool declared_fits(const Schema& sc, const ObjectSpec& o, uint32_t p, size_t s, uint32_t j) {
    return j >= p && j <= o.last_candidate[p] && o.usable[j] && fits(sc, s, o.schema[j]);
}
// Some declared key that may come at p and fits passes through names-trie node t.
bool candidate_below(const Schema& sc, const ObjectSpec& o, uint32_t t, uint32_t p, size_t s) {
    const auto& v = o.below[t];
    for (auto it = std::lower_bound(v.begin(), v.end(), p); it != v.end() && *it <= o.last_candidate[p]; ++it)
        if (fits(sc, s, o.schema[*it])) return true;
    return false;
}
bool key_possible(const Schema& sc, const ObjectSpec& o, uint32_t p, size_t s) {
    if (!o.key_possible[p]) return false;
    if (additional_fits(sc, o, p, s)) return true;
    for (uint32_t j = p; j < o.names.size() && j <= o.last_candidate[p]; ++j)
        if (declared_fits(sc, o, p, s, j)) return true;
    return false;
}

// Steps one thread by one byte. With a journal, every frame it overwrites or pops is logged
// first (undo() restores); forks (other anyOf alternatives starting with the byte) are
// appended as independent stacks that have consumed the byte.
class Engine {
public:
    Engine(const Schema& s, int max_ws, Journal* j, std::vector<Stack>* forks)
        : s_(s), max_ws_(static_cast<uint32_t>(max_ws)), tool_(s.dialect == Dialect::Gemma4Tool), j_(j), forks_(forks) {}

    bool step(Stack& st, uint8_t c) const {
        for (;;) {
            const uint32_t top = static_cast<uint32_t>(st.size() - 1);
            Frame f = st[top];
            Out o = feed(st, f, c);
            switch (o.act) {
                case Act::Fail: return false;
                case Act::Stay: set(st, top, f); return true;
                case Act::Pop:
                    pop(st);
                    child_done(st, o.arg);
                    return true;
                case Act::End:  // the value ended before c: its parent reads c
                    pop(st);
                    child_done(st, o.arg);
                    continue;
                case Act::Push:
                    set(st, top, f);
                    return start_value(st, o.arg, c);
                case Act::PushKey: {
                    set(st, top, f);  // key_possible() checked that a key and its value fit
                    Frame k;
                    k.node = f.node;
                    k.kind = K_KEY;
                    k.phase = S_BODY;
                    k.a = s_.objects[s_.nodes[f.node].spec].names.empty() ? kDiverged : 0;
                    st.push_back(k);
                    if (tool_) continue;  // a bare key: c is its first byte
                    return true;
                }
            }
        }
    }

    static Frame init_frame(const Schema& s, uint32_t node) {
        Frame f;
        f.node = node;
        switch (s.nodes[node].kind) {
            case NodeKind::Object: f.kind = K_OBJECT; f.phase = O_OPEN; break;
            case NodeKind::Array: f.kind = K_ARRAY; f.phase = A_OPEN; break;
            case NodeKind::String: f.kind = K_STRING; f.phase = S_OPEN; break;
            case NodeKind::Number: f.kind = K_NUMBER; f.phase = N_START; break;
            case NodeKind::Literal: f.kind = K_LITERAL; break;
            case NodeKind::Union: break;  // never a frame
        }
        return f;
    }

private:
    enum class Act { Fail, Stay, Pop, End, Push, PushKey };
    struct Out {
        Act act;
        uint32_t arg = 0;  // Push: node; Pop / End: result for the parent (a Key's property)
    };

    void set(Stack& st, uint32_t i, const Frame& f) const {
        if (j_) j_->emplace_back(i, st[i]);
        st[i] = f;
    }
    void pop(Stack& st) const {
        if (j_) j_->emplace_back(static_cast<uint32_t>(st.size() - 1), st.back());
        st.pop_back();
    }

    bool start_value(Stack& st, uint32_t node, uint8_t c) const {
        const Node& n = s_.nodes[node];
        if (!n.first[c] || !fits(s_, st.size(), node)) return false;  // (a union: some alternative fits)
        if (n.kind != NodeKind::Union) {
            st.push_back(init_frame(s_, node));
            return step(st, c);
        }
        int32_t primary = -1;
        for (uint32_t alt : s_.unions[n.spec]) {
            if (!s_.nodes[alt].first[c] || !fits(s_, st.size(), alt)) continue;
            if (primary < 0) {
                primary = static_cast<int32_t>(alt);
                continue;
            }
            if (!forks_) continue;
            Stack copy = st;
            copy.push_back(init_frame(s_, alt));
            Engine sub(s_, static_cast<int>(max_ws_), nullptr, forks_);
            if (sub.step(copy, c)) forks_->push_back(std::move(copy));
        }
        if (primary < 0) return false;
        st.push_back(init_frame(s_, static_cast<uint32_t>(primary)));
        return step(st, c);
    }

    void child_done(Stack& st, uint32_t info) const {
        const uint32_t top = static_cast<uint32_t>(st.size() - 1);
        Frame f = st[top];
        switch (f.kind) {
            case K_ROOT: f.phase = R_DONE; break;
            case K_OBJECT:
                if (f.phase == O_IN_KEY) {
                    f.b = info;
                    f.phase = O_AFTER_KEY;
                } else {
                    if (f.b != kAdditional) f.a = f.b + 1;
                    f.phase = O_AFTER_VALUE;
                }
                break;
            case K_ARRAY:
                ++f.a;
                f.phase = A_AFTER;
                break;
            default: break;
        }
        set(st, top, f);
    }

    Out ws(Frame& f) const {
        if (f.ws >= max_ws_) return {Act::Fail};
        ++f.ws;
        return {Act::Stay};
    }

    Out feed(const Stack& st, Frame& f, uint8_t c) const {
        switch (f.kind) {
            case K_ROOT:
                if (f.phase != R_BEFORE) return {Act::Fail};
                if (is_ws(c)) return ws(f);
                f.ws = 0;
                f.phase = R_IN;
                return {Act::Push, f.node};
            case K_OBJECT: return feed_object(f, c, st.size());
            case K_ARRAY: return feed_array(f, c, st.size());
            case K_STRING: {
                if (tool_) return feed_raw_string(f, c);
                if (f.phase == S_OPEN) {
                    if (c != '"') return {Act::Fail};
                    f.phase = S_BODY;
                    return {Act::Stay};
                }
                const StringSpec& sp = s_.strings[s_.nodes[f.node].spec];
                if (at_char_boundary(f.b) && c != '"' && f.a >= sp.max_len) return {Act::Fail};
                switch (string_body(f.b, c)) {
                    case B_FAIL: return {Act::Fail};
                    case B_CLOSE: return {f.a >= sp.min_len ? Act::Pop : Act::Fail};
                    case B_CHAR: ++f.a; return {Act::Stay};
                    case B_MID: return {Act::Stay};
                }
                return {Act::Fail};
            }
            case K_KEY: return tool_ ? feed_bare_key(st, f, c) : feed_key(st, f, c);
            case K_NUMBER: return feed_number(f, c);
            case K_LITERAL: {
                const SmallTrie& t = s_.literals[s_.nodes[f.node].spec];
                const int32_t next = t.child(f.a, c);
                if (next >= 0) {
                    f.a = static_cast<uint32_t>(next);
                    const auto& nn = t.nodes[f.a];
                    return {nn.value >= 0 && nn.n_edges == 0 ? Act::Pop : Act::Stay};
                }
                return {t.nodes[f.a].value >= 0 ? Act::End : Act::Fail};
            }
        }
        return {Act::Fail};
    }

    // sz: stack size with this frame on top.
    Out feed_object(Frame& f, uint8_t c, size_t sz) const {
        const ObjectSpec& o = s_.objects[s_.nodes[f.node].spec];
        if (f.phase == O_OPEN) {
            if (c != '{') return {Act::Fail};
            f.phase = O_FIRST;
            return {Act::Stay};
        }
        if (is_ws(c)) return ws(f);
        f.ws = 0;
        switch (f.phase) {
            case O_FIRST:
            case O_NEXT_KEY:
                if ((tool_ ? c != '}' : c == '"') && key_possible(s_, o, f.a, sz)) {
                    f.phase = O_IN_KEY;
                    return {Act::PushKey};
                }
                if (c == '}' && f.phase == O_FIRST && o.closable[f.a]) return {Act::Pop};
                return {Act::Fail};
            case O_AFTER_KEY:
                if (c != ':') return {Act::Fail};
                f.phase = O_VALUE;
                return {Act::Stay};
            case O_VALUE:
                f.phase = O_IN_VALUE;
                return {Act::Push, f.b == kAdditional ? static_cast<uint32_t>(o.additional) : o.schema[f.b]};
            case O_AFTER_VALUE:
                if (c == ',' && key_possible(s_, o, f.a, sz)) {
                    f.phase = O_NEXT_KEY;
                    return {Act::Stay};
                }
                if (c == '}' && o.closable[f.a]) return {Act::Pop};
                return {Act::Fail};
        }
        return {Act::Fail};
    }

    Out feed_array(Frame& f, uint8_t c, size_t sz) const {
        const ArraySpec& a = s_.arrays[s_.nodes[f.node].spec];
        if (f.phase == A_OPEN) {
            if (c != '[') return {Act::Fail};
            f.phase = A_FIRST;
            return {Act::Stay};
        }
        if (is_ws(c)) return ws(f);
        f.ws = 0;
        if (f.phase == A_AFTER) {
            if (c == ',' && f.a < a.max_items && fits(s_, sz, a.item(f.a))) {
                f.phase = A_NEXT;
                return {Act::Stay};
            }
            return {c == ']' && f.a >= a.min_items ? Act::Pop : Act::Fail};
        }
        if (c == ']' && f.phase == A_FIRST) return {f.a >= a.min_items ? Act::Pop : Act::Fail};
        if (f.a >= a.max_items) return {Act::Fail};
        f.phase = A_IN_ITEM;
        return {Act::Push, a.item(f.a)};
    }

    // A key of the object frame below (st[size-2], whose `a` is p). While the key still spells
    // the start of a declared name's canonical spelling (f.a is a names-trie node) it must lead
    // to a candidate name unless additional keys are allowed; once it leaves every name (on a
    // raw character) it is an additional key.
    Out feed_key(const Stack& st, Frame& f, uint8_t c) const {
        const ObjectSpec& o = s_.objects[s_.nodes[f.node].spec];
        const uint32_t p = st[st.size() - 2].a;
        const size_t so = st.size() - 1;  // stack size with the object on top
        const bool add_ok = additional_fits(s_, o, p, so);
        const bool boundary = at_char_boundary(f.b);
        if (boundary && c == '"') {
            if (f.a != kDiverged) {
                const int32_t j = o.names_trie.nodes[f.a].value;
                if (j >= 0) {
                    const uint32_t ju = static_cast<uint32_t>(j);
                    return {declared_fits(s_, o, p, so, ju) ? Act::Pop : Act::Fail, ju};
                }
            }
            return {add_ok ? Act::Pop : Act::Fail, kAdditional};
        }
        const bool in_escape = (f.b & 15) != 0;
        if (string_body(f.b, c) == B_FAIL) return {Act::Fail};
        if (f.a != kDiverged) {
            const int32_t t = o.names_trie.child(f.a, c);
            if (t < 0) {
                // Leaving the names on a raw character (not on '\\', not inside an escape)
                // makes the decoded key differ from every declared name: the character at
                // that point is spelled raw in all of their canonical spellings.
                if (!add_ok || in_escape || c == '\\') return {Act::Fail};
                f.a = kDiverged;
            } else {
                if (!add_ok && !candidate_below(s_, o, static_cast<uint32_t>(t), p, so)) return {Act::Fail};
                f.a = static_cast<uint32_t>(t);
            }
        }
        return {Act::Stay};
    }

    // Gemma4Tool string: kToolQuote, raw content (Frame::b: tool_dialect.h), kToolQuote.
    Out feed_raw_string(Frame& f, uint8_t c) const {
        if (f.phase == S_OPEN) {
            if (c != kToolQuote) return {Act::Fail};
            f.phase = S_BODY;
            return {Act::Stay};
        }
        const StringSpec& sp = s_.strings[s_.nodes[f.node].spec];
        if (raw_char_boundary(f.b) && c != kToolQuote && f.a >= sp.max_len) return {Act::Fail};
        switch (raw_string_byte(f.b, c)) {
            case RawByte::Fail: return {Act::Fail};
            case RawByte::Close: return {f.a >= sp.min_len ? Act::Pop : Act::Fail};
            case RawByte::Char: ++f.a; return {Act::Stay};
            case RawByte::Mid: return {Act::Stay};
        }
        return {Act::Fail};
    }

    // Gemma4Tool key: a declared name spelled bare (f.a: names-trie node; declared names never
    // contain ':'), ended by the ':' that the object then reads. Only candidates that may come
    // at p (dictsort order) and fit are followed.
    Out feed_bare_key(const Stack& st, Frame& f, uint8_t c) const {
        const ObjectSpec& o = s_.objects[s_.nodes[f.node].spec];
        const uint32_t p = st[st.size() - 2].a;
        const size_t so = st.size() - 1;
        if (f.a == kDiverged) return {Act::Fail};  // no declared names at all
        if (c == ':') {
            const int32_t j = o.names_trie.nodes[f.a].value;
            if (j < 0 || !declared_fits(s_, o, p, so, static_cast<uint32_t>(j))) return {Act::Fail};
            return {Act::End, static_cast<uint32_t>(j)};
        }
        const int32_t t = o.names_trie.child(f.a, c);
        if (t < 0 || !candidate_below(s_, o, static_cast<uint32_t>(t), p, so)) return {Act::Fail};
        f.a = static_cast<uint32_t>(t);
        return {Act::Stay};
    }

    Out feed_number(Frame& f, uint8_t c) const {
        const bool integer = s_.nodes[f.node].spec == 1;
        const bool digit = c >= '0' && c <= '9';
        uint32_t ni = f.a & 0xFF, nf = (f.a >> 8) & 0xFF, ne = (f.a >> 16) & 0xFF;
        auto done = [&](uint8_t phase) {
            f.phase = phase;
            f.a = ni | (nf << 8) | (ne << 16);
            return Out{Act::Stay};
        };
        auto frac_or_exp = [&]() -> Out {
            if (!integer && c == '.') return done(N_DOT);
            if (!integer && (c == 'e' || c == 'E')) return done(N_E);
            return {Act::End};
        };
        switch (f.phase) {
            case N_START:
                if (c == '-') return done(N_MINUS);
                [[fallthrough]];
            case N_MINUS:
                if (c == '0') return ++ni, done(N_ZERO);
                if (digit) return ++ni, done(N_INT);
                return {Act::Fail};
            case N_ZERO:
                if (digit) return {Act::Fail};
                return frac_or_exp();
            case N_INT:
                if (digit) return ni < kMaxIntDigits ? (++ni, done(N_INT)) : Out{Act::Fail};
                return frac_or_exp();
            case N_DOT:
                if (digit) return ++nf, done(N_FRAC);
                return {Act::Fail};
            case N_FRAC:
                if (digit) return nf < kMaxFracDigits ? (++nf, done(N_FRAC)) : Out{Act::Fail};
                if (c == 'e' || c == 'E') return done(N_E);
                return {Act::End};
            case N_E:
                if (c == '+' || c == '-') return done(N_ESIGN);
                if (digit) return ++ne, done(N_EXP);
                return {Act::Fail};
            case N_ESIGN:
                if (digit) return ++ne, done(N_EXP);
                return {Act::Fail};
            case N_EXP:
                if (digit) return ne < kMaxExpDigits ? (++ne, done(N_EXP)) : Out{Act::Fail};
                return {Act::End};
        }
        return {Act::Fail};
    }

    const Schema& s_;
    uint32_t max_ws_;
    bool tool_;  // Gemma4Tool dialect (tool_dialect.h)
    Journal* j_;
    std::vector<Stack>* forks_;
};

void undo(Stack& st, Journal& j, size_t j_mark, size_t size_mark) {
    while (j.size() > j_mark) {
        const auto& e = j.back();
        if (st.size() <= e.first) st.resize(e.first + 1);
        st[e.first] = e.second;
        j.pop_back();
    }
    st.resize(size_mark);
}

// Characters the string at the top of st may still take as plain content with no effect on
// what is allowed afterwards, or -1 if it is not such a string (escape or UTF-8 sequence
// open, a key that must still spell a declared name, not a string at all). Gemma4Tool: raw
// content (TokenVocab::Node::raw_chars) not starting with `danger` (raw_danger_byte).
int64_t free_string_budget(const Schema& s, const Stack& st, int& danger) {
    const Frame& f = st.back();
    danger = -1;
    if (s.dialect == Dialect::Gemma4Tool) {
        if (f.kind != K_STRING || f.phase != S_BODY || !raw_char_boundary(f.b)) return -1;
        const StringSpec& sp = s.strings[s.nodes[f.node].spec];
        danger = raw_danger_byte(f.b);
        return sp.max_len == kUnbounded ? std::numeric_limits<int64_t>::max() : int64_t(sp.max_len) - f.a;
    }
    if (f.kind == K_STRING) {
        if (f.phase != S_BODY || !at_char_boundary(f.b)) return -1;
        const StringSpec& sp = s.strings[s.nodes[f.node].spec];
        return sp.max_len == kUnbounded ? std::numeric_limits<int64_t>::max() : int64_t(sp.max_len) - f.a;
    }
    if (f.kind == K_KEY) {
        if (!at_char_boundary(f.b)) return -1;
        const ObjectSpec& o = s.objects[s.nodes[f.node].spec];
        if (f.a == kDiverged || additional_fits(s, o, st[st.size() - 2].a, st.size() - 1))
            return std::numeric_limits<int64_t>::max();
    }
    return -1;
}

inline void set_range(std::vector<uint64_t>& bits, uint32_t lo, uint32_t hi) {
    if (lo >= hi) return;
    const uint32_t wl = lo >> 6, wh = (hi - 1) >> 6;
    const uint64_t ml = ~uint64_t(0) << (lo & 63), mh = ~uint64_t(0) >> (63 - ((hi - 1) & 63));
    if (wl == wh) {
        bits[wl] |= ml & mh;
        return;
    }
    bits[wl] |= ml;
    for (uint32_t w = wl + 1; w < wh; ++w) bits[w] = ~uint64_t(0);
    bits[wh] |= mh;
}

struct Walker {
    const Schema& s;
    const TokenVocab& v;
    int max_ws;
    std::vector<uint64_t>& bits;

    // st has consumed the path to trie node `ni` (depth bytes) and is alive.
    void walk(Stack& st, uint32_t ni, uint32_t depth, Journal& j) {
        const TokenVocab::Node& x = v.nodes()[ni];
        set_range(bits, x.tok_begin, x.tok_begin + x.n_end);
        int danger = -1;
        const int64_t budget = free_string_budget(s, st, danger);
        const bool tool = s.dialect == Dialect::Gemma4Tool;
        std::vector<Stack> forks;
        Engine eng(s, max_ws, &j, &forks);
        const uint32_t end = x.child_begin + x.n_children;
        for (uint32_t ci = x.child_begin; ci < end; ++ci) {
            const TokenVocab::Node& y = v.nodes()[ci];
            const uint8_t plain = tool ? y.raw_chars : y.plain_chars;
            if (budget >= 0 && plain != TokenVocab::kNotPlain && y.byte != danger) {
                if (plain <= budget) {
                    set_range(bits, y.tok_begin, y.tok_end);
                } else {
                    // Too long for some tokens: take those whose characters past the path fit.
                    // The path's own count is the same for every token below.
                    const std::string_view path = v.piece(v.id_at(y.tok_begin)).substr(0, depth);
                    int64_t limit = budget;
                    for (char ch : path) limit += (static_cast<uint8_t>(ch) & 0xC0) != 0x80;
                    for (uint32_t r = y.tok_begin; r < y.tok_end; ++r)
                        if (v.chars_at(r) <= limit) bits[r >> 6] |= uint64_t(1) << (r & 63);
                }
                continue;
            }
            const size_t jm = j.size(), sm = st.size();
            if (eng.step(st, y.byte)) walk(st, ci, depth + 1, j);
            undo(st, j, jm, sm);
            if (!forks.empty()) {
                std::vector<Stack> fs;
                fs.swap(forks);
                for (Stack& f : fs) {
                    Journal fj;
                    walk(f, ci, depth + 1, fj);
                }
            }
        }
    }
};

bool accepting(const Schema& s, const Stack& st) {
    if (st.size() == 1) return st[0].phase == R_DONE;
    if (st.size() != 2) return false;
    const Frame& f = st[1];
    if (f.kind == K_NUMBER) return f.phase == N_ZERO || f.phase == N_INT || f.phase == N_FRAC || f.phase == N_EXP;
    if (f.kind == K_LITERAL) return s.literals[s.nodes[f.node].spec].nodes[f.a].value >= 0;
    return false;
}

}  // namespace

JsonMatcher::JsonMatcher(std::shared_ptr<const Schema> schema, std::shared_ptr<const TokenVocab> vocab, int max_ws)
    : schema_(std::move(schema)), vocab_(std::move(vocab)), max_ws_(max_ws) {
    if (!schema_ || !vocab_) throw InputError("[json_grammar] schema and vocabulary are required");
    if (max_ws < 0 || max_ws > 255) throw InputError("[json_grammar] max_whitespace must be in [0, 255]");
    if (schema_->dialect == Dialect::Gemma4Tool) {
        max_ws_ = 0;  // the dialect has no whitespace
        if (vocab_->delimiter() < 0)
            throw InputError("[tool_schema] the vocabulary has no <|\"|> token: the Gemma 4 tool-call dialect needs it");
    }
    if (!fits(*schema_, 1, schema_->root))
        throw InputError("[json_schema] the schema nests deeper than " + std::to_string(kMaxDepth - 1) +
                         " levels (keys included)");
    Frame root;
    root.node = schema_->root;
    root.kind = K_ROOT;
    root.phase = R_BEFORE;
    Stack st;
    st.reserve(kMaxDepth);
    st.push_back(root);
    threads_.push_back(std::move(st));
}

void JsonMatcher::allowed_ranks(std::vector<uint64_t>& bits, bool& eog_ok) {
    bits.assign((static_cast<size_t>(vocab_->n_usable()) + 63) / 64, 0);
    eog_ok = ended_ || complete();
    if (ended_ || done()) return;
    Walker w{*schema_, *vocab_, max_ws_, bits};
    for (const Stack& t : threads_) {
        Stack st = t;
        st.reserve(kMaxDepth);
        Journal j;
        j.reserve(256);
        w.walk(st, 0, 0, j);
    }
}

void JsonMatcher::mask_logits(float* logits, size_t n) {
    const size_t nv = static_cast<size_t>(vocab_->n_vocab());
    if (n < nv)
        throw InputError("[json_grammar] logits has " + std::to_string(n) + " entries, the vocabulary " +
                         std::to_string(nv));
    bool eog_ok = false;
    allowed_ranks(bits_, eog_ok);
    const float ninf = -std::numeric_limits<float>::infinity();
    std::vector<float> eog_logits;  // EOG ids are not in the trie: keep their logits aside
    for (int32_t e : vocab_->eog()) eog_logits.push_back(logits[e]);
    for (size_t id = 0; id < nv; ++id) {
        const int32_t r = vocab_->rank_of(static_cast<int32_t>(id));
        if (r < 0 || !((bits_[static_cast<uint32_t>(r) >> 6] >> (r & 63)) & 1)) logits[id] = ninf;
    }
    for (size_t id = nv; id < n; ++id) logits[id] = ninf;
    for (size_t k = 0; k < eog_logits.size(); ++k) logits[vocab_->eog()[k]] = eog_ok ? eog_logits[k] : ninf;
}

void JsonMatcher::allowed_ids(uint8_t* out) {
    bool eog_ok = false;
    allowed_ranks(bits_, eog_ok);
    const int32_t nv = vocab_->n_vocab();
    for (int32_t id = 0; id < nv; ++id) {
        const int32_t r = vocab_->rank_of(id);
        out[id] = r >= 0 && ((bits_[static_cast<uint32_t>(r) >> 6] >> (r & 63)) & 1);
    }
    for (int32_t e : vocab_->eog()) out[e] = eog_ok;
}

bool JsonMatcher::is_allowed(int32_t id) {
    if (id < 0 || id >= vocab_->n_vocab()) return false;
    if (vocab_->is_eog(id)) return ended_ || complete();
    if (ended_ || vocab_->rank_of(id) < 0) return false;
    std::vector<Stack> t = threads_;
    return advance(t, vocab_->piece(id));
}

bool JsonMatcher::advance(std::vector<Stack>& threads, std::string_view bytes) const {
    struct Item {
        Stack st;
        size_t pos;
    };
    std::vector<Item> work;
    for (Stack& t : threads) work.push_back({std::move(t), 0});
    std::vector<Stack> out, forks;
    Engine eng(*schema_, max_ws_, nullptr, &forks);
    while (!work.empty()) {
        Item it = std::move(work.back());
        work.pop_back();
        bool ok = true;
        for (size_t i = it.pos; ok && i < bytes.size(); ++i) {
            ok = eng.step(it.st, static_cast<uint8_t>(bytes[i]));
            for (Stack& f : forks) work.push_back({std::move(f), i + 1});
            forks.clear();
        }
        if (ok) out.push_back(std::move(it.st));
    }
    // Identical threads behave identically: keep one. Beyond kMaxThreads drop the rest (each
    // kept thread is sound on its own; only some alternative spellings are lost).
    std::sort(out.begin(), out.end(), [](const Stack& x, const Stack& y) {
        if (x.size() != y.size()) return x.size() < y.size();
        for (size_t i = 0; i < x.size(); ++i) {
            const Frame &p = x[i], &q = y[i];
            if (!(p == q))
                return std::make_tuple(p.node, p.kind, p.phase, p.ws, p.a, p.b) <
                       std::make_tuple(q.node, q.kind, q.phase, q.ws, q.a, q.b);
        }
        return false;
    });
    out.erase(std::unique(out.begin(), out.end()), out.end());
    if (out.size() > kMaxThreads) out.resize(kMaxThreads);
    threads = std::move(out);
    return !threads.empty();
}

bool JsonMatcher::accept_token(int32_t id) {
    if (id < 0 || id >= vocab_->n_vocab() || ended_) return false;
    if (vocab_->is_eog(id)) {
        if (!complete()) return false;
        ended_ = true;
        return true;
    }
    if (vocab_->rank_of(id) < 0) return false;
    return accept_bytes(vocab_->piece(id));
}

bool JsonMatcher::accept_bytes(std::string_view bytes) {
    if (ended_) return false;
    std::vector<Stack> t = threads_;
    if (!advance(t, bytes)) return false;
    threads_ = std::move(t);
    return true;
}

bool JsonMatcher::complete() const {
    for (const Stack& t : threads_)
        if (accepting(*schema_, t)) return true;
    return false;
}

bool JsonMatcher::done() const {
    if (ended_) return true;
    for (const Stack& t : threads_)
        if (!(t.size() == 1 && t[0].phase == R_DONE)) return false;
    return true;
}

}  // namespace unigemma::grammar
