#include "gguf/gguf_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <signal.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <regex>
#include <set>

#include "base/error.h"

namespace unigemma::gguf {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr uint32_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 4;
constexpr uint64_t kMaxNameLen = 65535;
// Each metadata key and tensor costs a few hundred bytes in memory (map node, name copies,
// Value or TensorInfo) but as little as 14 / 33 bytes in the file, so a file of nothing but
// tiny keys would make the reader allocate ~12x its size. Real models have tens of keys and at
// most a few thousand tensors (vocabularies and per-layer lists are arrays, not keys): these
// caps bound that table memory to ~15 MB each whatever the file declares.
constexpr uint64_t kMaxKeys = 65536;
constexpr uint64_t kMaxTensors = 65536;

[[noreturn]] void fail(const std::string& msg) { throw GGUFError("[gguf] " + msg); }

size_t scalar_size(ValueType t) {
    switch (t) {
        case ValueType::UINT8: case ValueType::INT8: case ValueType::BOOL: return 1;
        case ValueType::UINT16: case ValueType::INT16: return 2;
        case ValueType::UINT32: case ValueType::INT32: case ValueType::FLOAT32: return 4;
        case ValueType::UINT64: case ValueType::INT64: case ValueType::FLOAT64: return 8;
        default: return 0;  // STRING, ARRAY: variable
    }
}

// Keys and tensor names become Python str: reject byte strings that are not UTF-8.
bool valid_utf8(std::string_view s) {
    size_t i = 0, n = s.size();
    while (i < n) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        if (len == 0 || i + len > n) return false;
        for (size_t k = 1; k < len; ++k)
            if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
        i += len;
    }
    return true;
}

bool value_type_valid(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::FLOAT64); }

// Error descriptions are built only when a check fails: the reader walks one string per
// vocabulary entry (262144 for Gemma 3), and formatting "key 'x'[i]" for each of them cost
// more than the parse itself. `what` is a string, a literal, or a callable returning a string.
inline std::string describe(const std::string& s) { return s; }
inline std::string describe(const char* s) { return s; }
template <typename F>
auto describe(const F& f) -> decltype(std::string(f())) { return f(); }

// Names a metadata value in errors: a key, or element `index` of the array `parent` names.
struct ValuePath {
    const ValuePath* parent = nullptr;
    std::string_view key;
    uint64_t index = 0;
    std::string str() const {
        return parent ? parent->str() + "[" + std::to_string(index) + "]" : "key '" + std::string(key) + "'";
    }
};

// Bounds-checked little-endian reader over one mapped part.
class Cursor {
public:
    Cursor(const uint8_t* begin, size_t size, std::string where)
        : base_(begin), p_(begin), end_(begin + size), where_(std::move(where)) {}
    size_t pos() const { return static_cast<size_t>(p_ - base_); }
    size_t left() const { return static_cast<size_t>(end_ - p_); }
    const uint8_t* ptr() const { return p_; }

    template <typename D>
    void need(uint64_t n, const D& what) const {
        if (n > left())
            fail(describe(what) + ": needs " + std::to_string(n) + " bytes at offset " + std::to_string(pos()) +
                 " but only " + std::to_string(left()) + " remain in " + where_);
    }
    template <typename T, typename D>
    T read(const D& what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, p_, sizeof(T));
        p_ += sizeof(T);
        return v;
    }
    template <typename D>
    std::string_view str(const D& what) {
        if (left() < 8) need(8, [&] { return describe(what) + " (string length)"; });
        uint64_t n = read<uint64_t>("");
        if (n > left()) need(n, [&] { return describe(what) + " (string of length " + std::to_string(n) + ")"; });
        std::string_view s(reinterpret_cast<const char*>(p_), n);
        p_ += n;
        return s;
    }
    template <typename D>
    void skip(uint64_t n, const D& what) {
        need(n, what);
        p_ += n;
    }

private:
    const uint8_t* base_;
    const uint8_t* p_;
    const uint8_t* end_;
    std::string where_;
};

// Reads one value of type `t` at the cursor into `v`, or, with v == nullptr, only validates
// it and moves past it (the children of an array of arrays are stored encoded, see Value).
void read_value(Cursor& c, ValueType t, Value* v, const ValuePath& path, int depth) {
    const auto what = [&] { return path.str(); };
    uint64_t u = 0;
    int64_t i = 0;
    double f = 0.0;
    switch (t) {
        case ValueType::UINT8: u = c.read<uint8_t>(what); i = static_cast<int64_t>(u); break;
        case ValueType::UINT16: u = c.read<uint16_t>(what); i = static_cast<int64_t>(u); break;
        case ValueType::UINT32: u = c.read<uint32_t>(what); i = static_cast<int64_t>(u); break;
        case ValueType::UINT64: u = c.read<uint64_t>(what); i = static_cast<int64_t>(u); break;
        case ValueType::INT8: i = c.read<int8_t>(what); u = static_cast<uint64_t>(i); break;
        case ValueType::INT16: i = c.read<int16_t>(what); u = static_cast<uint64_t>(i); break;
        case ValueType::INT32: i = c.read<int32_t>(what); u = static_cast<uint64_t>(i); break;
        case ValueType::INT64: i = c.read<int64_t>(what); u = static_cast<uint64_t>(i); break;
        case ValueType::FLOAT32: f = c.read<float>(what); break;
        case ValueType::FLOAT64: f = c.read<double>(what); break;
        case ValueType::BOOL: {
            uint8_t b = c.read<uint8_t>(what);
            if (b > 1) fail(what() + ": bool value " + std::to_string(b) + " is not 0 or 1");
            u = b;
            break;
        }
        case ValueType::STRING: {
            std::string_view s = c.str(what);
            if (v) v->str = s;
            break;
        }
        case ValueType::ARRAY: {
            if (depth >= kMaxArrayDepth) fail(what() + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth));
            uint32_t et = c.read<uint32_t>([&] { return what() + " (array element type)"; });
            if (!value_type_valid(et)) fail(what() + ": unknown array element type " + std::to_string(et));
            const auto elem_type = static_cast<ValueType>(et);
            const uint64_t count = c.read<uint64_t>([&] { return what() + " (array length)"; });
            const uint8_t* elems = c.ptr();
            size_t es = scalar_size(elem_type);
            if (es > 0) {
                if (count > c.left() / es)
                    fail(what() + ": array of " + std::to_string(count) + " " + value_type_name(elem_type) +
                         " elements is larger than the " + std::to_string(c.left()) + " bytes left in the file");
                c.skip(count * es, what);
                if (elem_type == ValueType::BOOL)
                    for (uint64_t k = 0; k < count; ++k)
                        if (elems[k] > 1) fail(what() + ": bool array element " + std::to_string(k) + " is not 0 or 1");
            } else if (elem_type == ValueType::STRING) {
                // each string needs at least its 8-byte length
                if (count > c.left() / 8)
                    fail(what() + ": array of " + std::to_string(count) + " strings is larger than the " +
                         std::to_string(c.left()) + " bytes left in the file");
                // walk the strings first, so the views are allocated only once the file is known
                // to hold all of them (then 16 bytes per element of at least 8 file bytes)
                Cursor probe = c;
                for (uint64_t k = 0; k < count; ++k) {
                    const ValuePath elem{&path, {}, k};
                    probe.str([&] { return elem.str(); });
                }
                if (v) {
                    v->strings.reserve(count);
                    for (uint64_t k = 0; k < count; ++k) v->strings.push_back(c.str(""));
                } else {
                    c.skip(static_cast<uint64_t>(probe.ptr() - c.ptr()), "");
                }
            } else {  // array of arrays: each child needs at least its 12-byte header
                if (count > c.left() / 12)
                    fail(what() + ": array of " + std::to_string(count) + " arrays is larger than the " +
                         std::to_string(c.left()) + " bytes left in the file");
                // validated here, kept encoded: an in-memory Value per child would be ~10x the
                // 12 bytes a child takes in the file
                for (uint64_t k = 0; k < count; ++k) {
                    const ValuePath elem{&path, {}, k};
                    read_value(c, ValueType::ARRAY, nullptr, elem, depth + 1);
                }
            }
            if (v) {
                v->elem_type = elem_type;
                v->count = count;
                v->elems = elems;
                v->n_bytes = static_cast<uint64_t>(c.ptr() - elems);
            }
            break;
        }
    }
    if (v) {
        v->type = t;
        v->u = u;
        v->i = i;
        v->f = f;
    }
}

}  // namespace

std::vector<Value> array_children(const Value& v, const std::string& key) {
    if (v.type != ValueType::ARRAY || v.elem_type != ValueType::ARRAY)
        fail("key '" + key + "': not an array of arrays");
    // the children were validated when the file was opened; the checks run again because a
    // file truncated since then reads as zeros here (see MappedFile)
    Cursor c(v.elems, v.n_bytes, "key '" + key + "'");
    const ValuePath root{nullptr, key, 0};
    std::vector<Value> out(v.count);
    for (uint64_t k = 0; k < v.count; ++k) {
        const ValuePath elem{&root, {}, k};
        read_value(c, ValueType::ARRAY, &out[k], elem, 1);
    }
    return out;
}

const char* value_type_name(ValueType t) {
    static const char* names[] = {"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
                                  "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};
    auto i = static_cast<uint32_t>(t);
    return i < 13 ? names[i] : "?";
}

// ---- SIGBUS guard for the mappings --------------------------------------------------------
// A read of a MAP_SHARED page that lies past the current end of the file (another process
// truncated it after we mapped it) or whose backing read fails raises SIGBUS, which would kill
// the process. Chosen design: catch the fault rather than copy the file (the weights are
// hundreds of MB to GBs and most stay mapped). Every mapping is kept in a fixed registry
// [base, base + len); the handler, for a fault inside one of them, maps anonymous zero pages
// (MAP_FIXED, read-only) from the faulting page to the end of that mapping, marks the entry
// damaged and returns, so the faulting load runs again and reads zeros. Truncation only removes
// pages from the end, so one fault replaces every page that can still fault. Faults outside
// our mappings (and signals sent with kill) go to the handler installed before ours.
//
// The handler takes no lock and allocates nothing: entries are atomics, written only under
// g_registry_mutex by the threads that map and unmap. mmap is a plain system call on Linux
// (not on POSIX's async-signal-safe list, but it touches no user-space state).
namespace {

constexpr int kMaxMappings = 1024;

struct MappingSlot {
    std::atomic<uintptr_t> base{0};  // 0: free
    std::atomic<size_t> len{0};
    std::atomic<int> damaged{0};
};

MappingSlot g_slots[kMaxMappings];
std::mutex g_registry_mutex;
struct sigaction g_prev_bus {};     // the handler ours replaced; written before ours is installed
std::atomic<size_t> g_page{4096};

void on_sigbus(int sig, siginfo_t* si, void* uctx) {
    if (si && si->si_code > 0) {  // raised by the kernel for a faulting access
        const uintptr_t a = reinterpret_cast<uintptr_t>(si->si_addr);
        const size_t page = g_page.load(std::memory_order_relaxed);
        for (MappingSlot& s : g_slots) {
            const uintptr_t b = s.base.load(std::memory_order_acquire);
            if (b == 0) continue;
            const size_t n = s.len.load(std::memory_order_acquire);
            if (a < b || a - b >= n) continue;
            const uintptr_t from = a & ~(static_cast<uintptr_t>(page) - 1);
            const uintptr_t to = (b + n + page - 1) & ~(static_cast<uintptr_t>(page) - 1);
            void* r = ::mmap(reinterpret_cast<void*>(from), to - from, PROT_READ,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            if (r != MAP_FAILED) {
                s.damaged.store(1, std::memory_order_release);
                return;  // the faulting load runs again and reads zeros
            }
            break;
        }
    }
    const struct sigaction& prev = g_prev_bus;
    if (prev.sa_flags & SA_SIGINFO) {
        if (prev.sa_sigaction) {
            prev.sa_sigaction(sig, si, uctx);
            return;
        }
    } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
        prev.sa_handler(sig);
        return;
    }
    // default action: with it restored, a fault recurs when the load runs again and a signal
    // sent by kill is delivered again once this handler returns
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(SIGBUS, &dfl, nullptr);
    if (!si || si->si_code <= 0) ::raise(sig);
}

// Installs on_sigbus unless it is the current SIGBUS handler (again if someone replaced it
// since, e.g. Python's faulthandler.enable(), which then becomes the handler we chain to).
void ensure_sigbus_handler() {
    struct sigaction cur {};
    ::sigaction(SIGBUS, nullptr, &cur);
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == &on_sigbus) return;
    g_prev_bus = cur;
    struct sigaction sa {};
    sa.sa_sigaction = &on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, nullptr);
}

int register_mapping(const void* base, size_t len) {
    std::lock_guard<std::mutex> lock(g_registry_mutex);
    g_page.store(static_cast<size_t>(::sysconf(_SC_PAGESIZE)), std::memory_order_relaxed);
    ensure_sigbus_handler();
    for (int k = 0; k < kMaxMappings; ++k) {
        MappingSlot& s = g_slots[k];
        if (s.base.load(std::memory_order_relaxed) != 0) continue;
        s.damaged.store(0, std::memory_order_relaxed);
        s.len.store(len, std::memory_order_release);
        s.base.store(reinterpret_cast<uintptr_t>(base), std::memory_order_release);
        return k;
    }
    return -1;
}

void unregister_mapping(int k) {
    if (k < 0) return;
    std::lock_guard<std::mutex> lock(g_registry_mutex);
    g_slots[k].base.store(0, std::memory_order_release);
}

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot open '" + path + "': " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        fail("'" + path + "' is not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ == 0) {
        ::close(fd);
        fail("'" + path + "' is empty");
    }
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) fail("cannot mmap '" + path + "': " + std::strerror(errno));
    slot_ = register_mapping(p, size_);
    if (slot_ < 0) {
        ::munmap(p, size_);
        fail("cannot open '" + path + "': more than " + std::to_string(kMaxMappings) + " GGUF files are open");
    }
    data_ = static_cast<const uint8_t*>(p);
}

MappedFile::~MappedFile() {
    // out of the registry first: once unmapped, the range may be reused by other mappings
    unregister_mapping(slot_);
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

bool MappedFile::damaged() const {
    return slot_ >= 0 && g_slots[slot_].damaged.load(std::memory_order_acquire) != 0;
}

void GGUFFile::check_intact() const {
    for (const auto& p : parts_)
        if (p->damaged())
            fail("model file '" + p->path() + "' was truncated or changed while in use (a read past its "
                 "current end returned zeros); reopen it");
}

GGUFFile::GGUFFile(const std::string& path) {
    parts_.push_back(std::make_shared<MappedFile>(path));
    parse_part(0, true);

    const Value* count_v = find("split.count");
    if (!count_v) return;
    uint64_t n_split = get_uint("split.count");
    if (n_split == 0 || n_split > 9999) fail("key 'split.count': invalid split count " + std::to_string(n_split));
    if (n_split == 1) return;
    if (get_uint("split.no") != 0)
        fail("key 'split.no': '" + path + "' is part " + std::to_string(get_uint("split.no")) +
             ", open the first part (-00001-of-NNNNN.gguf)");
    static const std::regex re(R"((.*)-(\d{5})-of-(\d{5})\.gguf$)");
    std::smatch m;
    if (!std::regex_match(path, m, re))
        fail("key 'split.count': file declares " + std::to_string(n_split) +
             " parts but its name does not follow PREFIX-00001-of-NNNNN.gguf: '" + path + "'");
    if (std::stoull(m[3].str()) != n_split)
        fail("key 'split.count': is " + std::to_string(n_split) + " but the file name says " + m[3].str());
    for (uint64_t i = 1; i < n_split; ++i) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "-%05llu-of-%05llu.gguf", static_cast<unsigned long long>(i + 1),
                      static_cast<unsigned long long>(n_split));
        parts_.push_back(std::make_shared<MappedFile>(m[1].str() + buf));
        parse_part(static_cast<uint32_t>(i), false);
    }
    if (find("split.tensors.count")) {
        uint64_t want = get_uint("split.tensors.count");
        if (want != tensors_.size())
            fail("key 'split.tensors.count': declares " + std::to_string(want) + " tensors but the " +
                 std::to_string(n_split) + " parts hold " + std::to_string(tensors_.size()));
    }
}

void GGUFFile::parse_part(uint32_t part_index, bool is_first) {
    const MappedFile& mf = *parts_[part_index];
    Cursor c(mf.data(), mf.size(), "'" + mf.path() + "'");

    uint32_t magic = c.read<uint32_t>("magic");
    if (magic != kMagic) fail("'" + mf.path() + "': bad magic (not a GGUF file)");
    uint32_t version = c.read<uint32_t>("version");
    if (version != 2 && version != 3)
        fail("'" + mf.path() + "': unsupported GGUF version " + std::to_string(version) + " (2 and 3 are supported)");
    if (is_first) version_ = version;
    uint64_t n_tensors = c.read<uint64_t>("tensor count");
    uint64_t n_kv = c.read<uint64_t>("metadata key count");
    // minimal encodings: kv = 8 (key len) + 4 (type) + 1 (u8 value); tensor info = 8 + 4 + 4 + 8
    if (n_kv > c.left() / 13)
        fail("metadata key count " + std::to_string(n_kv) + " is larger than the file can hold");
    if (n_tensors > c.left() / 24)
        fail("tensor count " + std::to_string(n_tensors) + " is larger than the file can hold");
    if (n_kv > kMaxKeys)
        fail("metadata key count " + std::to_string(n_kv) + " is more than the " + std::to_string(kMaxKeys) +
             " supported");
    if (n_tensors > kMaxTensors - tensors_.size())  // all split parts together
        fail("tensor count " + std::to_string(n_tensors) + (tensors_.empty() ? "" : " (plus the earlier parts' tensors)") +
             " is more than the " + std::to_string(kMaxTensors) + " supported");

    std::map<std::string, Value> part_kv;
    for (uint64_t k = 0; k < n_kv; ++k) {
        std::string_view key = c.str([&] { return "metadata key #" + std::to_string(k); });
        std::string key_s(key);
        if (key.empty()) fail("metadata key #" + std::to_string(k) + " is empty");
        if (key.size() > kMaxNameLen) fail("metadata key #" + std::to_string(k) + " is longer than 65535 bytes");
        if (!valid_utf8(key)) fail("metadata key #" + std::to_string(k) + " is not valid UTF-8");
        if (part_kv.count(key_s)) fail("duplicate metadata key '" + key_s + "'");
        uint32_t t = c.read<uint32_t>([&] { return "key '" + key_s + "' (value type)"; });
        if (!value_type_valid(t)) fail("key '" + key_s + "': unknown value type " + std::to_string(t));
        Value v;
        read_value(c, static_cast<ValueType>(t), &v, ValuePath{nullptr, key_s, 0}, 0);
        part_kv.emplace(key_s, std::move(v));
        if (is_first) key_order_.push_back(key_s);
    }

    uint32_t alignment = 32;
    if (auto it = part_kv.find("general.alignment"); it != part_kv.end()) {
        if (it->second.type != ValueType::UINT32)
            fail(std::string("key 'general.alignment': must be UINT32, got ") + value_type_name(it->second.type));
        uint64_t a = it->second.u;
        if (a == 0 || (a & (a - 1)) != 0)
            fail("key 'general.alignment': " + std::to_string(a) + " is not a power of two");
        alignment = static_cast<uint32_t>(a);
    }
    if (is_first) {
        alignment_ = alignment;
        kv_ = std::move(part_kv);
    } else {
        auto it = part_kv.find("split.no");
        if (it == part_kv.end() || it->second.u != part_index)
            fail("'" + mf.path() + "': key 'split.no' missing or not " + std::to_string(part_index));
    }

    size_t first_new = tensors_.size();
    for (uint64_t k = 0; k < n_tensors; ++k) {
        TensorInfo ti;
        ti.name = std::string(c.str([&] { return "tensor #" + std::to_string(k) + " name"; }));
        if (!valid_utf8(ti.name)) fail("tensor #" + std::to_string(k) + " name is not valid UTF-8");
        const std::string what = "tensor '" + ti.name + "'";
        if (ti.name.empty()) fail("tensor #" + std::to_string(k) + " has an empty name");
        if (ti.name.size() > kMaxNameLen) fail("tensor #" + std::to_string(k) + " name is longer than 65535 bytes");
        if (tensor_index_.count(ti.name)) fail("duplicate " + what);
        ti.n_dims = c.read<uint32_t>([&] { return what + " (dims)"; });
        if (ti.n_dims == 0 || ti.n_dims > kMaxDims)
            fail(what + ": has " + std::to_string(ti.n_dims) + " dims (1 to 4 allowed)");
        ti.n_elements = 1;
        for (uint32_t d = 0; d < ti.n_dims; ++d) {
            uint64_t ne = c.read<uint64_t>([&] { return what + " (dim " + std::to_string(d) + ")"; });
            if (ne == 0 || ne > static_cast<uint64_t>(INT64_MAX))
                fail(what + ": dim " + std::to_string(d) + " is " + std::to_string(static_cast<int64_t>(ne)) +
                     " (must be positive)");
            if (ti.n_elements > static_cast<uint64_t>(INT64_MAX) / ne)
                fail(what + ": element count overflows int64");
            ti.n_elements *= ne;
            ti.ne[d] = ne;
        }
        ti.type = c.read<uint32_t>([&] { return what + " (type)"; });
        TypeTraits tr = type_traits(ti.type);
        if (!tr.name) fail(what + ": unknown tensor type " + std::to_string(ti.type));
        if (ti.ne[0] % tr.block_size != 0)
            fail(what + ": row length " + std::to_string(ti.ne[0]) + " is not a multiple of the " + tr.name +
                 " block size " + std::to_string(tr.block_size));
        uint64_t n_blocks = ti.n_elements / tr.block_size;
        if (n_blocks > static_cast<uint64_t>(INT64_MAX) / tr.type_size) fail(what + ": byte size overflows int64");
        ti.n_bytes = n_blocks * tr.type_size;
        ti.offset = c.read<uint64_t>([&] { return what + " (offset)"; });
        if (ti.offset % alignment != 0)
            fail(what + ": offset " + std::to_string(ti.offset) + " is not a multiple of the alignment " +
                 std::to_string(alignment));
        ti.part = part_index;
        tensor_index_.emplace(ti.name, tensors_.size());
        tensors_.push_back(std::move(ti));
    }

    uint64_t data_start = (c.pos() + alignment - 1) / alignment * alignment;
    if (n_tensors > 0 && data_start > mf.size())
        fail("'" + mf.path() + "': data section starts at " + std::to_string(data_start) + ", past the end of the file");
    uint64_t data_len = n_tensors > 0 ? mf.size() - data_start : 0;
    uint64_t prev_end = 0;
    for (size_t k = first_new; k < tensors_.size(); ++k) {
        TensorInfo& ti = tensors_[k];
        const std::string what = "tensor '" + ti.name + "'";
        if (ti.offset < prev_end)
            fail(what + ": offset " + std::to_string(ti.offset) + (k > first_new ? " overlaps or precedes the previous tensor '" +
                 tensors_[k - 1].name + "' (ends at " + std::to_string(prev_end) + ")" : ""));
        if (ti.offset > data_len || ti.n_bytes > data_len - ti.offset)
            fail(what + ": data [" + std::to_string(ti.offset) + ", +" + std::to_string(ti.n_bytes) +
                 ") runs past the end of the file (data section holds " + std::to_string(data_len) + " bytes)");
        prev_end = ti.offset + ti.n_bytes;
        ti.data = mf.data() + data_start + ti.offset;
    }
    // a file truncated while the header was parsed reads as zeros past its end
    if (mf.damaged()) check_intact();
}

const Value* GGUFFile::find(const std::string& key) const {
    auto it = kv_.find(key);
    return it == kv_.end() ? nullptr : &it->second;
}

const TensorInfo* GGUFFile::find_tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::vector<std::string> GGUFFile::part_paths() const {
    std::vector<std::string> out;
    for (auto& p : parts_) out.push_back(p->path());
    return out;
}

uint64_t GGUFFile::file_bytes() const {
    uint64_t n = 0;
    for (auto& p : parts_) n += p->size();
    return n;
}

uint64_t GGUFFile::tensor_data_bytes() const {
    uint64_t n = 0;
    for (auto& t : tensors_) n += t.n_bytes;
    return n;
}

static const Value& need_key(const GGUFFile& f, const std::string& key) {
    const Value* v = f.find(key);
    if (!v) fail("missing required key '" + key + "'");
    return *v;
}

std::string GGUFFile::get_string(const std::string& key) const {
    const Value& v = need_key(*this, key);
    if (v.type != ValueType::STRING) fail("key '" + key + "': expected STRING, got " + value_type_name(v.type));
    return std::string(v.str);
}

uint64_t GGUFFile::get_uint(const std::string& key) const {
    const Value& v = need_key(*this, key);
    switch (v.type) {
        case ValueType::UINT8: case ValueType::UINT16: case ValueType::UINT32: case ValueType::UINT64:
            return v.u;
        case ValueType::INT8: case ValueType::INT16: case ValueType::INT32: case ValueType::INT64:
            if (v.i < 0) fail("key '" + key + "': value " + std::to_string(v.i) + " is negative");
            return static_cast<uint64_t>(v.i);
        default:
            fail("key '" + key + "': expected an integer, got " + value_type_name(v.type));
    }
}

double GGUFFile::get_float(const std::string& key) const {
    const Value& v = need_key(*this, key);
    if (v.type != ValueType::FLOAT32 && v.type != ValueType::FLOAT64)
        fail("key '" + key + "': expected FLOAT32, got " + value_type_name(v.type));
    return v.f;
}

bool GGUFFile::get_bool(const std::string& key) const {
    const Value& v = need_key(*this, key);
    if (v.type != ValueType::BOOL) fail("key '" + key + "': expected BOOL, got " + value_type_name(v.type));
    return v.u != 0;
}

}  // namespace unigemma::gguf
