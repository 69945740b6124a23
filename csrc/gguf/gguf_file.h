// GGUF reader: memory-maps a file (or every part of a split file), parses and validates
// the header, metadata and tensor table, and hands out zero-copy views of tensor data.
//
// File layout (little-endian):
//   "GGUF" u32 version(2|3) u64 n_tensors u64 n_kv
//   n_kv x { string key, u32 value_type, value }
//   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
//   padding to `general.alignment` (default 32), then the data section; each tensor's
//   offset is relative to the data section start and a multiple of the alignment.
// Strings are u64 length + bytes (no terminator). Arrays are u32 elem_type + u64 count
// + elements. Every length, count and offset is checked against the bytes left before
// it is used, so a malformed file raises GGUFError instead of reading out of bounds.
//
// Memory bound: parsing allocates only for what the file actually holds, never for a declared
// count before its bytes are seen. A numeric array is a pointer into the mapping; a string
// array is a vector of views (16 bytes per element of at least 8 file bytes), sized after its
// elements have been walked; an array of arrays is a pointer to its encoded children (decoded
// on demand by array_children), so its in-memory cost does not depend on its length.
//
// Truncation while mapped: reading a page of a MAP_SHARED mapping past the end of a file that
// another process truncated raises SIGBUS. Every mapping is registered with a process-wide
// SIGBUS handler (see MappedFile) that maps zero pages over the rest of the mapping, marks the
// file as damaged and lets the read retry, so the read returns zeros instead of killing the
// process. check_intact() then throws GGUFError: entry points that read tensor data call it
// after the read and report the damage instead of returning results computed from zeros.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/ggml_types.h"

namespace unigemma::gguf {

enum class ValueType : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
    BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* value_type_name(ValueType t);

// A read-only mapping of one file; lives as long as any view into it.
class MappedFile {
public:
    explicit MappedFile(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }
    // True once a read of the mapping faulted (the file shrank or could not be read after it
    // was mapped); the faulting page and the rest of the mapping then read as zeros.
    bool damaged() const;

private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    int slot_ = -1;  // index in the SIGBUS handler's registry of mappings
};

// One metadata value. Scalars are decoded; strings and arrays point into the mapping.
struct Value {
    ValueType type = ValueType::UINT8;
    // scalars: integers widen to u/i 64, floats to double, bool to u
    uint64_t u = 0;
    int64_t i = 0;
    double f = 0.0;
    std::string_view str;  // STRING
    // ARRAY
    ValueType elem_type = ValueType::UINT8;
    uint64_t count = 0;
    // numeric arrays: the raw little-endian elements; arrays of arrays: the encoded children
    // (each u32 elem_type + u64 count + elements), already validated; see array_children
    const uint8_t* elems = nullptr;
    uint64_t n_bytes = 0;                    // ARRAY: encoded size of the elements at `elems`
    std::vector<std::string_view> strings;   // string arrays
};

// Decodes the children of an array of arrays (v.elem_type == ARRAY), one level: a child that is
// itself an array of arrays again points at its encoded children. `key` names v in errors.
std::vector<Value> array_children(const Value& v, const std::string& key);

struct TensorInfo {
    std::string name;
    uint32_t n_dims = 0;
    uint64_t ne[4] = {1, 1, 1, 1};  // fastest-varying first (reverse of a PyTorch shape)
    uint32_t type = 0;               // GGMLType id
    uint64_t offset = 0;             // relative to the data section of its file part
    uint64_t n_elements = 0;
    uint64_t n_bytes = 0;
    uint32_t part = 0;               // index of the split part holding the data
    const uint8_t* data = nullptr;   // view into that part's mapping
};

class GGUFFile {
public:
    // Opens `path`; if it declares split.count > 1, opens every part by the
    // "-NNNNN-of-MMMMM.gguf" naming and merges their tensor tables.
    explicit GGUFFile(const std::string& path);

    uint32_t version() const { return version_; }
    uint32_t alignment() const { return alignment_; }
    const std::vector<std::string>& key_order() const { return key_order_; }
    const std::map<std::string, Value>& metadata() const { return kv_; }
    const Value* find(const std::string& key) const;
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo* find_tensor(const std::string& name) const;
    std::vector<std::string> part_paths() const;
    uint64_t file_bytes() const;       // all parts together
    uint64_t tensor_data_bytes() const;  // sum of tensor sizes
    std::shared_ptr<const MappedFile> part(uint32_t i) const { return parts_.at(i); }
    // Throws GGUFError "[gguf] model file '...' was truncated or changed while in use" when a read
    // of any part's mapping faulted since it was opened (MappedFile::damaged). Call it after
    // reading tensor data or metadata views, before handing out what was computed from them.
    void check_intact() const;

    // Typed getters that throw GGUFError naming the key on a missing key or a wrong type.
    std::string get_string(const std::string& key) const;
    uint64_t get_uint(const std::string& key) const;   // any unsigned/signed int >= 0
    double get_float(const std::string& key) const;    // float32/float64
    bool get_bool(const std::string& key) const;

private:
    void parse_part(uint32_t part_index, bool is_first);

    std::vector<std::shared_ptr<MappedFile>> parts_;
    uint32_t version_ = 0;
    uint32_t alignment_ = 32;
    std::vector<std::string> key_order_;
    std::map<std::string, Value> kv_;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, size_t> tensor_index_;
};

}  // namespace unigemma::gguf
