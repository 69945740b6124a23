#include "ops/webgpu/webgpu_backend.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "ops/webgpu/shaders.h"

namespace unigemma::webgpu {

namespace {

constexpr WGPUBufferUsage kStorage = WGPUBufferUsage_Storage | WGPUBufferUsage_CopyDst | WGPUBufferUsage_CopySrc;
constexpr uint64_t kParamSlot = 256;                 // bytes per dispatch's parameters (>= any alignment)
constexpr uint64_t kParamBytes = 1ull << 20;         // a page of parameters: 4096 dispatches
constexpr uint64_t kUploadBytes = 8ull << 20;        // a page of per-forward host data

// ---------------------------------------------------------------- address registry

struct Region {
    WGPUBuffer buf;
    uint64_t bytes;
};
std::mutex g_regions_mu;
std::map<uintptr_t, Region> g_regions;  // reserved base -> buffer

std::string src(const char* name) {
    const char* s = shader_source(name);
    if (!s) throw DeviceError(std::string("[webgpu] no embedded shader '") + name + "'");
    return s;
}

std::string type_consts(GGMLType t) { return "const WTYPE: u32 = " + std::to_string(static_cast<uint32_t>(t)) + "u;\n"; }

bool supported_weight(GGMLType t) {
    switch (t) {
        case GGMLType::F32: case GGMLType::F16: case GGMLType::BF16: case GGMLType::Q8_0: case GGMLType::Q4_0:
        case GGMLType::Q4_1: case GGMLType::Q5_0: case GGMLType::Q5_1: case GGMLType::Q4_K: case GGMLType::Q5_K:
        case GGMLType::Q6_K:
            return true;
        default:
            return false;
    }
}

uint32_t kv_type_id(GGMLType t) {
    if (t == GGMLType::F32) return 0;
    if (t == GGMLType::F16) return 1;
    if (t == GGMLType::Q8_0) return 8;
    throw DeviceError(std::string("[webgpu.kv_cache] cache type ") + gguf::type_traits(static_cast<uint32_t>(t)).name +
                      " is not on the WebGPU backend yet (use f32, f16 or q8_0)");
}

uint32_t u32_of(int64_t v, const char* op, const char* what) {
    if (v < 0 || v > int64_t(UINT32_MAX))
        throw InputError(std::string("[webgpu.") + op + "] " + what + " " + std::to_string(v) + " out of range");
    return static_cast<uint32_t>(v);
}

// Grid for n workgroups over (x, y): at most 65535 per dimension.
void grid(uint64_t n, uint32_t* gx, uint32_t* gy) {
    *gx = static_cast<uint32_t>(std::min<uint64_t>(n, 65535));
    *gy = static_cast<uint32_t>((n + 65534) / 65535);
}

class DeviceBuffer final : public ops::Buffer {
public:
    DeviceBuffer(Device& dev, size_t n) : dev_(dev), n_(n) {
        bytes_ = Device::padded_size(uint64_t(n) * 4);
        buf_ = dev.create_buffer(bytes_, kStorage, "an activation buffer");
        base_ = mmap(nullptr, bytes_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base_ == MAP_FAILED) {
            dev.release_buffer(buf_, bytes_);
            throw DeviceError("[webgpu] cannot reserve address space for a device buffer");
        }
        std::lock_guard<std::mutex> lock(g_regions_mu);
        g_regions[reinterpret_cast<uintptr_t>(base_)] = Region{buf_, bytes_};
    }
    ~DeviceBuffer() override {
        {
            std::lock_guard<std::mutex> lock(g_regions_mu);
            g_regions.erase(reinterpret_cast<uintptr_t>(base_));
        }
        munmap(base_, bytes_);
        dev_.release_buffer(buf_, bytes_);
    }
    float* data() override { return static_cast<float*>(base_); }
    size_t n_floats() const override { return n_; }

private:
    Device& dev_;
    size_t n_;
    uint64_t bytes_ = 0;
    WGPUBuffer buf_ = nullptr;
    void* base_ = nullptr;
};

struct Pn {  // a dispatch's parameters: 32-bit words in the WGSL struct's field order
    uint32_t w[64] = {};
    int n = 0;
    Pn& u(uint64_t v) { w[n++] = static_cast<uint32_t>(v); return *this; }
    Pn& f(float v) { std::memcpy(&w[n++], &v, 4); return *this; }
};

}  // namespace

bool resolve_address(const void* p, WGPUBuffer* buf, uint64_t* byte_offset, uint64_t* buf_bytes) {
    const auto a = reinterpret_cast<uintptr_t>(p);
    std::lock_guard<std::mutex> lock(g_regions_mu);
    auto it = g_regions.upper_bound(a);
    if (it == g_regions.begin()) return false;
    --it;
    if (a >= it->first + it->second.bytes) return false;
    *buf = it->second.buf;
    *byte_offset = a - it->first;
    *buf_bytes = it->second.bytes;
    return true;
}

// ---------------------------------------------------------------- weights

WeightCache::~WeightCache() {
    for (auto& kv : matrices_)
        for (auto& c : kv.second) dev_->release_buffer(c.buf, c.bytes);
    for (auto& kv : vectors_) dev_->release_buffer(kv.second.first, kv.second.second);
}

const std::vector<WeightCache::Chunk>& WeightCache::matrix(const ops::WeightView& w) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = matrices_.find(w.data);
    if (it != matrices_.end()) return it->second;
    const uint64_t limit = std::min(dev_->info().max_storage_binding, dev_->info().max_buffer_size);
    const uint64_t rb = w.row_bytes;
    if (rb == 0 || rb > limit) throw DeviceError("[webgpu.weights] a row of " + std::to_string(rb) + " bytes exceeds a binding");
    const int64_t per_chunk = static_cast<int64_t>(std::min<uint64_t>(uint64_t(w.rows), (limit - 16) / rb));
    std::vector<Chunk> chunks;
    try {
        for (int64_t r0 = 0; r0 < w.rows; r0 += per_chunk) {
            Chunk c;
            c.row0 = r0;
            c.rows = std::min(per_chunk, w.rows - r0);
            c.bytes = uint64_t(c.rows) * rb;
            c.buf = dev_->create_buffer(c.bytes, WGPUBufferUsage_Storage | WGPUBufferUsage_CopyDst,
                                        "a weight matrix of " + std::to_string(w.rows) + " x " + std::to_string(w.cols));
            chunks.push_back(c);
            dev_->write(c.buf, 0, w.data + uint64_t(r0) * rb, c.bytes);
        }
    } catch (...) {
        for (auto& c : chunks) dev_->release_buffer(c.buf, c.bytes);
        throw;
    }
    for (auto& c : chunks) bytes_ += Device::padded_size(c.bytes);
    return matrices_.emplace(w.data, std::move(chunks)).first->second;
}

WGPUBuffer WeightCache::vector(const float* host, size_t n, uint64_t* bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = vectors_.find(host);
    if (it != vectors_.end() && it->second.second >= n * 4) {
        *bytes = it->second.second;
        return it->second.first;
    }
    WGPUBuffer b = dev_->create_buffer(n * 4, WGPUBufferUsage_Storage | WGPUBufferUsage_CopyDst, "a weight vector");
    dev_->write(b, 0, host, n * 4);
    const uint64_t nb = Device::padded_size(n * 4);
    if (it != vectors_.end()) {
        dev_->release_buffer(it->second.first, it->second.second);
        bytes_ -= it->second.second;
        vectors_.erase(it);
    }
    vectors_[host] = {b, nb};
    bytes_ += nb;
    *bytes = nb;
    return b;
}

// ---------------------------------------------------------------- KV cache on the device

struct WebGpuBackend::KVMirror {
    Device* dev = nullptr;
    WGPUBuffer k = nullptr, v = nullptr;
    uint64_t k_bytes = 0, v_bytes = 0;
    int64_t cap = 0;
    uint32_t kt = 0, vt = 0;
    ~KVMirror() {
        dev->release_buffer(k, k_bytes);
        dev->release_buffer(v, v_bytes);
    }
};

WebGpuBackend::KVMirror& WebGpuBackend::mirror(const ops::KVLayer& kv_c) {
    auto& kv = const_cast<ops::KVLayer&>(kv_c);  // the device copy is cache state, not the layer's contents
    auto m = std::static_pointer_cast<KVMirror>(kv.device_copy);
    const int64_t want = kv.capacity();
    if (m && m->cap >= want) return *m;
    auto nm = std::make_shared<KVMirror>();
    nm->dev = dev_.get();
    nm->kt = kv_type_id(kv.k_type());
    nm->vt = kv_type_id(kv.v_type());
    const uint64_t hd = uint64_t(kv.head_dim());
    auto words = [&](uint32_t t) { return t == 8 ? hd / 32 * 9 : t == 1 ? (hd + 1) / 2 : hd; };
    nm->cap = std::max<int64_t>(want, 1);
    nm->k_bytes = Device::padded_size(uint64_t(nm->cap) * kv.n_kv_head() * words(nm->kt) * 4);
    nm->v_bytes = Device::padded_size(uint64_t(nm->cap) * kv.n_kv_head() * words(nm->vt) * 4);
    nm->k = dev_->create_buffer(nm->k_bytes, kStorage, "the KV cache (K) of a layer");
    nm->v = dev_->create_buffer(nm->v_bytes, kStorage, "the KV cache (V) of a layer");
    if (m) {
        // A full-attention layer grew: slot = position there, so the old slots keep their
        // place. Copied in a submission of its own, ahead of this forward's (which has not
        // touched this layer yet: growth happens before a forward's first store).
        if (kv.sliding()) throw Error("[webgpu.kv_cache] a sliding-window ring changed size");
        WGPUCommandEncoder e = dev_->api().wgpuDeviceCreateCommandEncoder(dev_->device(), nullptr);
        dev_->api().wgpuCommandEncoderCopyBufferToBuffer(e, m->k, 0, nm->k, 0, std::min(m->k_bytes, nm->k_bytes));
        dev_->api().wgpuCommandEncoderCopyBufferToBuffer(e, m->v, 0, nm->v, 0, std::min(m->v_bytes, nm->v_bytes));
        WGPUCommandBuffer cb = dev_->api().wgpuCommandEncoderFinish(e, nullptr);
        dev_->api().wgpuCommandEncoderRelease(e);
        dev_->submit_and_wait(cb);
    }
    kv.device_copy = nm;
    return *nm;
}

// ---------------------------------------------------------------- backend

WebGpuBackend::WebGpuBackend(std::shared_ptr<Device> dev, std::shared_ptr<WeightCache> weights)
    : dev_(std::move(dev)), weights_(std::move(weights)) {
    if (!weights_) weights_ = std::make_shared<WeightCache>(dev_);
    dummy_ = dev_->create_buffer(256, kStorage, "an unused binding");
}

WebGpuBackend::~WebGpuBackend() {
    discard();
    for (auto& s : staging_) dev_->release_buffer(s.buf, s.cap);
    for (WGPUBuffer b : param_pages_) dev_->release_buffer(b, kParamBytes);
    for (WGPUBuffer b : upload_pages_) dev_->release_buffer(b, kUploadBytes);
    dev_->release_buffer(dummy_, 256);
}

std::unique_ptr<ops::Buffer> WebGpuBackend::alloc(size_t n_floats) { return std::make_unique<DeviceBuffer>(*dev_, n_floats); }

ops::MatmulSupport WebGpuBackend::matmul_support(GGMLType type, int64_t cols) const {
    const auto tr = gguf::type_traits(static_cast<uint32_t>(type));
    if (!supported_weight(type))
        return {ops::MatmulSupport::NoKernel, std::string("type ") + (tr.name ? tr.name : "?") + " has no WebGPU kernel"};
    if (tr.block_size > 1 && cols % tr.block_size != 0)
        return {ops::MatmulSupport::RowLength, "rows of " + std::to_string(cols) + " are not whole " + tr.name + " blocks"};
    return {};
}

WebGpuBackend::Bind WebGpuBackend::bind_whole(WGPUBuffer b, uint64_t bytes) {
    Bind r;
    r.buf = b;
    r.offset = 0;
    // rounded up to whole words (the buffer has room: create_buffer pads to 16)
    r.size = std::min((bytes + 3) / 4 * 4, dev_->info().max_storage_binding / 4 * 4);
    return r;
}

WebGpuBackend::Bind WebGpuBackend::bind_vector(const float* host, size_t n) {
    uint64_t bytes = 0;
    WGPUBuffer b = weights_->vector(host, n, &bytes);
    return bind_whole(b, bytes);
}

WebGpuBackend::Bind WebGpuBackend::bind_tensor(const float* data, int64_t n, const char* op) {
    WGPUBuffer b;
    uint64_t off, total;
    if (!resolve_address(data, &b, &off, &total))
        throw Error(std::string("[webgpu.") + op + "] a tensor that is not in WebGPU device memory");
    const uint64_t align = std::max<uint32_t>(dev_->info().storage_offset_alignment, 4);
    Bind r;
    r.buf = b;
    r.offset = off / align * align;
    r.size = std::min(total - r.offset, dev_->info().max_storage_binding) / 4 * 4;
    r.elem = static_cast<uint32_t>((off - r.offset) / 4);
    if (off + uint64_t(n) * 4 > r.offset + r.size)
        throw DeviceError(std::string("[webgpu.") + op + "] a tensor of " + std::to_string(n * 4) +
                          " bytes does not fit one storage binding of this adapter (" +
                          std::to_string(dev_->info().max_storage_binding) + " bytes); lower n_ubatch");
    return r;
}

// The parameter and upload arenas are pages that a submission fills in order and the next
// reuses: a full page moves on to the next page (allocated the first time), never to a
// submission of its own, so queue writes of one forward never overwrite what its recorded
// kernels have yet to read (they all land before its one submission).
WebGpuBackend::Bind WebGpuBackend::params(const void* p, size_t bytes) {
    if (params_used_ + kParamSlot > kParamBytes) {
        ++param_page_;
        params_used_ = 0;
    }
    if (param_page_ == param_pages_.size())
        param_pages_.push_back(
            dev_->create_buffer(kParamBytes, WGPUBufferUsage_Uniform | WGPUBufferUsage_CopyDst, "kernel parameters"));
    Bind r;
    r.buf = param_pages_[param_page_];
    r.offset = params_used_;
    r.size = kParamSlot;
    dev_->write(r.buf, r.offset, p, bytes);
    params_used_ += kParamSlot;
    return r;
}

WebGpuBackend::Bind WebGpuBackend::upload(const void* data, size_t bytes) {
    const uint64_t align = std::max<uint32_t>(dev_->info().storage_offset_alignment, 16);
    const uint64_t need = (std::max<size_t>(bytes, 4) + align - 1) / align * align;
    if (need > kUploadBytes) {
        // larger than a page: a buffer of its own, freed after the submission that reads it
        WGPUBuffer b = dev_->create_buffer(need, kStorage, "host data of a forward");
        dev_->write(b, 0, data, bytes);
        release_after_flush_.push_back({b, need});
        return bind_whole(b, need);
    }
    if (uploads_used_ + need > kUploadBytes) {
        ++upload_page_;
        uploads_used_ = 0;
    }
    if (upload_page_ == upload_pages_.size())
        upload_pages_.push_back(dev_->create_buffer(kUploadBytes, kStorage, "per-forward host data"));
    Bind r;
    r.buf = upload_pages_[upload_page_];
    r.offset = uploads_used_;
    r.size = std::min<uint64_t>(kUploadBytes - uploads_used_, dev_->info().max_storage_binding) / 4 * 4;
    dev_->write(r.buf, r.offset, data, bytes);
    uploads_used_ += need;
    return r;
}

void WebGpuBackend::ensure_encoder() {
    if (!enc_) enc_ = dev_->api().wgpuDeviceCreateCommandEncoder(dev_->device(), nullptr);
}

void WebGpuBackend::ensure_pass() {
    ensure_encoder();
    if (!pass_) pass_ = dev_->api().wgpuCommandEncoderBeginComputePass(enc_, nullptr);
}

void WebGpuBackend::reset_arenas() {
    param_page_ = upload_page_ = 0;
    params_used_ = uploads_used_ = out_used_ = 0;
    for (const auto& b : release_after_flush_) dev_->release_buffer(b.first, b.second);
    release_after_flush_.clear();
    retired_.clear();
}

void WebGpuBackend::end_pass() {
    if (!pass_) return;
    dev_->api().wgpuComputePassEncoderEnd(pass_);
    dev_->api().wgpuComputePassEncoderRelease(pass_);
    pass_ = nullptr;
}

void WebGpuBackend::dispatch(const Device::Pipeline& pipe, const char* op, const Bind& param,
                             std::initializer_list<Bind> binds, uint32_t gx, uint32_t gy, uint32_t gz) {
    if (gx == 0 || gy == 0 || gz == 0) return;
    if (gx > dev_->info().max_workgroups_per_dim || gy > dev_->info().max_workgroups_per_dim ||
        gz > dev_->info().max_workgroups_per_dim)
        throw DeviceError(std::string("[webgpu.") + op + "] grid " + std::to_string(gx) + " x " + std::to_string(gy) +
                          " x " + std::to_string(gz) + " exceeds the adapter's limit");
    const Api& a = dev_->api();
    ensure_pass();
    WGPUBindGroupEntry e[8] = {};
    e[0].binding = 0;
    e[0].buffer = param.buf;
    e[0].offset = param.offset;
    e[0].size = param.size;
    size_t n = 1;
    for (const Bind& b : binds) {
        e[n].binding = static_cast<uint32_t>(n);
        e[n].buffer = b.buf ? b.buf : dummy_;
        e[n].offset = b.buf ? b.offset : 0;
        e[n].size = b.buf ? b.size : 256;
        ++n;
    }
    WGPUBindGroupDescriptor d{};
    d.layout = pipe.layout;
    d.entryCount = n;
    d.entries = e;
    WGPUBindGroup g = a.wgpuDeviceCreateBindGroup(dev_->device(), &d);
    a.wgpuComputePassEncoderSetPipeline(pass_, pipe.pipe);
    a.wgpuComputePassEncoderSetBindGroup(pass_, 0, g, 0, nullptr);
    a.wgpuComputePassEncoderDispatchWorkgroups(pass_, gx, gy, gz);
    a.wgpuBindGroupRelease(g);
}

void WebGpuBackend::flush() {
    const Api& a = dev_->api();
    if (!enc_) {  // nothing recorded (every read records a copy)
        reset_arenas();
        return;
    }
    end_pass();
    WGPUCommandBuffer cb = a.wgpuCommandEncoderFinish(enc_, nullptr);
    a.wgpuCommandEncoderRelease(enc_);
    enc_ = nullptr;
    // waits: the arenas are rewritten by the next forward right after this
    dev_->submit_and_wait(cb);
    reset_arenas();
    // map each staging buffer once and copy its reads out
    for (size_t si = 0; si < staging_.size(); ++si) {
        Staging& s = staging_[si];
        if (s.used == 0) continue;
        std::vector<uint8_t> host(s.used);
        dev_->read_mapped(s.buf, s.used, host.data());
        for (const PendingRead& r : reads_)
            if (r.staging == si) std::memcpy(r.host, host.data() + r.offset, r.bytes);
        s.used = 0;
    }
    reads_.clear();
}

void WebGpuBackend::discard() {
    const Api& a = dev_->api();
    end_pass();
    if (enc_) {
        a.wgpuCommandEncoderRelease(enc_);
        enc_ = nullptr;
    }
    for (auto& s : staging_) s.used = 0;
    reads_.clear();
    reset_arenas();
}

void WebGpuBackend::begin_forward() {
    discard();  // what an interrupted forward left recorded
    in_forward_ = true;
}

void WebGpuBackend::end_forward() {
    in_forward_ = false;
    flush();
}

// ---------------------------------------------------------------- ops

void WebGpuBackend::embed(const ops::WeightView& E, const int32_t* tokens, const int8_t* kinds, const float* embd,
                          float scale, ops::Tensor x) {
    const int64_t H = x.cols, n = x.rows;
    if (E.cols != H) throw Error("[webgpu.embed] table width " + std::to_string(E.cols) + " vs rows of " + std::to_string(H));
    if (n == 0) return;
    std::vector<uint32_t> meta(static_cast<size_t>(2 * n));
    for (int64_t t = 0; t < n; ++t) {
        meta[size_t(t)] = static_cast<uint32_t>(tokens[t]);
        meta[size_t(n + t)] = kinds ? uint32_t(kinds[t] != 0) : 0u;
    }
    const Bind mb = upload(meta.data(), meta.size() * 4);
    Bind eb{};
    bool any_embd = false;
    if (kinds)
        for (int64_t t = 0; t < n; ++t) any_embd |= kinds[t] != 0;
    if (any_embd) {
        std::vector<float> rows(static_cast<size_t>(n * H), 0.0f);
        for (int64_t t = 0; t < n; ++t)
            if (kinds[t] != 0) std::memcpy(rows.data() + t * H, embd + t * H, size_t(H) * 4);
        eb = upload(rows.data(), rows.size() * 4);
    }
    const Bind xb = bind_tensor(x.data, x.size(), "embed");
    const auto& pipe = dev_->pipeline("embed." + std::to_string(uint32_t(E.type)),
                                      type_consts(E.type) + src("quant") + src("embed"), "main", "ursss");
    for (const auto& c : weights_->matrix(E)) {
        Pn p;
        p.u(H).u(E.row_bytes).u(n).u(xb.elem).u(mb.elem).u(mb.elem + n).u(any_embd ? 1 : 0).u(eb.elem).u(c.row0).u(c.rows);
        p.f(scale);
        uint32_t gx, gy;
        grid(uint64_t(n), &gx, &gy);
        dispatch(pipe, "embed", params(p.w, p.n * 4), {bind_whole(c.buf, c.bytes), xb, mb, eb}, gx, gy, 1);
    }
}

void WebGpuBackend::matmul_impl(const ops::WeightView& w, const int32_t* ids, ops::Tensor x, ops::Tensor y,
                                const char* op) {
    if (x.cols != w.cols || x.rows != y.rows || (!ids && y.cols != w.rows))
        throw Error(std::string("[webgpu.") + op + "] weight [" + std::to_string(w.rows) + "][" + std::to_string(w.cols) +
                    "], x [" + std::to_string(x.rows) + "][" + std::to_string(x.cols) + "], y [" +
                    std::to_string(y.rows) + "][" + std::to_string(y.cols) + "]");
    const auto sup = matmul_support(w.type, w.cols);
    if (!sup) throw ModelError(std::string("[webgpu.") + op + "] " + sup.why);
    if (x.rows == 0 || y.cols == 0) return;
    const Bind xb = bind_tensor(x.data, x.size(), op), yb = bind_tensor(y.data, y.size(), op);
    Bind ib{};
    if (ids) {
        for (int64_t i = 0; i < y.cols; ++i)
            if (ids[i] < 0 || ids[i] >= w.rows)
                throw InputError(std::string("[webgpu.") + op + "] row id " + std::to_string(ids[i]) + " outside [0, " +
                                 std::to_string(w.rows) + ")");
        ib = upload(ids, size_t(y.cols) * 4);
    }
    const auto& pipe = dev_->pipeline("matmul." + std::to_string(uint32_t(w.type)),
                                      type_consts(w.type) + src("quant") + src("matmul"), "main", "ursss");
    const uint32_t gz = static_cast<uint32_t>((x.rows + 7) / 8);
    // threads per output row: a function of the row length only (the reduction order, and so
    // a row's bits, must not depend on anything else)
    const int64_t ng = (w.cols + 31) / 32;
    uint32_t tpr = 1;
    while (tpr < 64 && tpr < ng) tpr <<= 1;
    const int64_t rows_per_wg = 64 / tpr;
    for (const auto& c : weights_->matrix(w)) {
        const int64_t outs = ids ? y.cols : c.rows;
        const int64_t wgs = (outs + rows_per_wg - 1) / rows_per_wg;
        const uint32_t per_dim = static_cast<uint32_t>(std::min<int64_t>(wgs, 32768));
        Pn p;
        p.u(outs).u(w.cols).u(w.row_bytes).u(x.rows).u(xb.elem).u(x.cols).u(yb.elem).u(y.cols);
        p.u(ids ? 0 : c.row0).u(ids ? 1 : 0).u(ib.elem).u(c.row0).u(c.rows).u(per_dim).u(tpr);
        dispatch(pipe, op, params(p.w, p.n * 4), {bind_whole(c.buf, c.bytes), xb, yb, ib}, per_dim,
                 static_cast<uint32_t>((wgs + per_dim - 1) / per_dim), gz);
    }
}

void WebGpuBackend::matmul(const ops::WeightView& w, ops::Tensor x, ops::Tensor y, int) {
    matmul_impl(w, nullptr, x, y, "matmul");
}

void WebGpuBackend::matmul_rows(const ops::WeightView& w, const int32_t* row_ids, ops::Tensor x, ops::Tensor y, int) {
    matmul_impl(w, row_ids, x, y, "matmul_rows");
}

void WebGpuBackend::rms_norm(ops::Tensor y, ops::Tensor x, const float* w, float eps) {
    if (x.rows != y.rows || x.cols != y.cols) throw Error("[webgpu.rms_norm] x and y differ in shape");
    if (x.size() == 0) return;
    const Bind xb = bind_tensor(x.data, x.size(), "rms_norm"), yb = bind_tensor(y.data, y.size(), "rms_norm");
    Bind wb{};
    if (w) {
        wb = bind_vector(w, size_t(x.cols));
    }
    Pn p;
    p.u(x.rows).u(x.cols).u(1).u(xb.elem).u(yb.elem).u(w ? 1 : 0).u(0).u(0).u(0).u(0).u(0).u(0).u(0).f(eps);
    uint32_t gx, gy;
    grid(uint64_t(x.rows), &gx, &gy);
    dispatch(dev_->pipeline("norm.rms_norm", src("reduce") + src("norm"), "rms_norm", "usssss"), "rms_norm", params(p.w, p.n * 4), {xb, yb, wb, Bind{}, Bind{}},
             gx, gy, 1);
}

void WebGpuBackend::head_norm_rope(ops::Tensor x, int head_dim, const float* w, float eps, const int64_t* pos,
                                   const float* inv_freq) {
    if (head_dim <= 0 || x.cols % head_dim != 0)
        throw Error("[webgpu.head_norm_rope] row of " + std::to_string(x.cols) + " is not whole heads of " +
                    std::to_string(head_dim));
    if (inv_freq && head_dim % 2 != 0) throw Error("[webgpu.head_norm_rope] RoPE needs an even head_dim");
    if (x.size() == 0) return;
    const Bind xb = bind_tensor(x.data, x.size(), "head_norm_rope");
    Bind wb{}, fb{}, mb{};
    if (w) wb = bind_vector(w, size_t(head_dim));
    if (inv_freq) {
        fb = bind_vector(inv_freq, size_t(head_dim / 2));
        std::vector<uint32_t> p32(static_cast<size_t>(x.rows));
        for (int64_t t = 0; t < x.rows; ++t) p32[size_t(t)] = u32_of(pos[t], "head_norm_rope", "position");
        mb = upload(p32.data(), p32.size() * 4);
    }
    const int64_t heads = x.cols / head_dim;
    Pn p;
    p.u(x.rows).u(head_dim).u(heads).u(xb.elem).u(0).u(w ? 1 : 0).u(wb.elem).u(0).u(0).u(inv_freq ? 1 : 0);
    p.u(mb.elem).u(0).u(fb.elem).f(eps);
    dispatch(dev_->pipeline("norm.head_norm_rope", src("reduce") + src("norm"), "head_norm_rope", "usssss"), "head_norm_rope",
             params(p.w, p.n * 4), {xb, xb, wb, mb, fb}, static_cast<uint32_t>(heads), static_cast<uint32_t>(x.rows), 1);
}

void WebGpuBackend::elementwise(const char* entry, ops::Tensor x, const Bind& y, uint32_t cols, float s,
                                const Bind* meta, uint32_t n_rows) {
    if (x.size() == 0) return;
    const Bind xb = bind_tensor(x.data, x.size(), entry);
    Pn p;
    p.u(uint64_t(x.size())).u(cols).u(xb.elem).u(y.elem).u(meta ? meta->elem : 0).u(n_rows).f(s);
    uint32_t gx, gy;
    grid((uint64_t(x.size()) + 255) / 256, &gx, &gy);
    dispatch(dev_->pipeline(std::string("elementwise.") + entry, src("elementwise"), entry, "usss"), entry,
             params(p.w, p.n * 4), {xb, y, meta ? *meta : Bind{}}, gx, gy, 1);
}

static void check_same(const char* op, const ops::Tensor& a, const ops::Tensor& b) {
    if (a.rows != b.rows || a.cols != b.cols)
        throw Error(std::string("[webgpu.") + op + "] shapes differ: [" + std::to_string(a.rows) + "][" +
                    std::to_string(a.cols) + "] vs [" + std::to_string(b.rows) + "][" + std::to_string(b.cols) + "]");
}

void WebGpuBackend::add(ops::Tensor x, ops::Tensor y) {
    check_same("add", x, y);
    if (x.size()) elementwise("add", x, bind_tensor(y.data, y.size(), "add"), uint32_t(x.cols), 0.0f, nullptr, 0);
}

void WebGpuBackend::scale(ops::Tensor x, float s) { elementwise("scale", x, Bind{}, uint32_t(x.cols), s, nullptr, 0); }

void WebGpuBackend::copy(ops::Tensor dst, ops::Tensor src_t) {
    check_same("copy", dst, src_t);
    if (dst.size()) elementwise("copy", dst, bind_tensor(src_t.data, src_t.size(), "copy"), uint32_t(dst.cols), 0.0f, nullptr, 0);
}

void WebGpuBackend::gelu_tanh_mul(ops::Tensor g, ops::Tensor u) {
    check_same("gelu_tanh_mul", g, u);
    if (g.size())
        elementwise("gelu_tanh_mul", g, bind_tensor(u.data, u.size(), "gelu_tanh_mul"), uint32_t(g.cols), 0.0f, nullptr, 0);
}

void WebGpuBackend::softcap(ops::Tensor x, float cap) {
    if (!(cap > 0.0f)) throw Error("[webgpu.softcap] cap must be positive");
    elementwise("softcap", x, Bind{}, uint32_t(x.cols), cap, nullptr, 0);
}

void WebGpuBackend::add_bias(ops::Tensor x, const float* b) {
    if (x.size() == 0) return;
    elementwise("add_bias", x, bind_vector(b, size_t(x.cols)), uint32_t(x.cols), 0.0f, nullptr, 0);
}

void WebGpuBackend::add_table_rows(ops::Tensor x, const float* table, const int64_t* ra, const int64_t* rb) {
    if (x.size() == 0) return;
    // The table's row count is not part of the call: the rows are summed on the host (one
    // float32 addition per element, as the CPU rounds it) and added on the device.
    std::vector<float> s(static_cast<size_t>(x.size()));
    const int64_t C = x.cols;
    for (int64_t t = 0; t < x.rows; ++t) {
        const float* a = table + ra[t] * C;
        const float* b = table + rb[t] * C;
        for (int64_t i = 0; i < C; ++i) s[size_t(t * C + i)] = a[i] + b[i];
    }
    elementwise("add", x, upload(s.data(), s.size() * 4), uint32_t(C), 0.0f, nullptr, 0);
}

void WebGpuBackend::layer_norm(ops::Tensor y, ops::Tensor x, const float* w, const float* b, float eps) {
    layer_norm_f64(y, x, nullptr, w, b, eps);
}

void WebGpuBackend::layer_norm_f64(ops::Tensor y, ops::Tensor x, const int32_t* srcp, const float* w, const float* b,
                                   float eps) {
    check_same("layer_norm", y, x);
    if (x.size() == 0) return;
    if (srcp && x.data == y.data) throw Error("[webgpu.layer_norm] a permuted norm needs distinct x and y");
    const Bind xb = bind_tensor(x.data, x.size(), "layer_norm"), yb = bind_tensor(y.data, y.size(), "layer_norm");
    Bind wb{}, bb{}, mb{};
    if (w) wb = bind_vector(w, size_t(x.cols));
    if (b) bb = bind_vector(b, size_t(x.cols));
    if (srcp) mb = upload(srcp, size_t(x.cols) * 4);
    Pn p;
    p.u(x.rows).u(x.cols).u(1).u(xb.elem).u(yb.elem).u(w ? 1 : 0).u(wb.elem).u(b ? 1 : 0).u(bb.elem).u(0);
    p.u(mb.elem).u(srcp ? 1 : 0).u(0).f(eps);
    uint32_t gx, gy;
    grid(uint64_t(x.rows), &gx, &gy);
    dispatch(dev_->pipeline("norm.layer_norm", src("reduce") + src("norm"), "layer_norm", "usssss"), "layer_norm", params(p.w, p.n * 4),
             {xb, yb, wb, mb, bb}, gx, gy, 1);
}

void WebGpuBackend::kv_store(ops::KVLayer& kv, ops::Tensor k, ops::Tensor v, const int64_t* pos) {
    const int64_t W = int64_t(kv.n_kv_head()) * kv.head_dim();
    if (k.cols != W || v.cols != W || k.rows != v.rows)
        throw Error("[webgpu.kv_store] k / v rows of " + std::to_string(k.cols) + " / " + std::to_string(v.cols) +
                    " for a layer of " + std::to_string(W));
    if (k.rows == 0) return;
    for (int64_t t = 0; t < k.rows; ++t) {
        if (pos[t] < 0 || (!kv.sliding() && pos[t] >= kv.capacity()))
            throw Error("[webgpu.kv_store] position " + std::to_string(pos[t]) + " outside the reserved cache");
        kv.mark_stored(pos[t]);  // the host layer keeps the slot bookkeeping on every backend
    }
    KVMirror& m = mirror(kv);
    std::vector<uint32_t> p32(static_cast<size_t>(k.rows));
    for (int64_t t = 0; t < k.rows; ++t) p32[size_t(t)] = u32_of(pos[t], "kv_store", "position");
    const Bind mb = upload(p32.data(), p32.size() * 4);
    const Bind kb = bind_tensor(k.data, k.size(), "kv_store"), vb = bind_tensor(v.data, v.size(), "kv_store");
    Pn p;
    p.u(k.rows).u(0).u(kv.n_kv_head()).u(kv.head_dim()).u(0).u(0).u(m.cap).u(kv.sliding() ? 1 : 0).u(0).u(0).u(0);
    p.u(mb.elem).u(0).u(0).u(0).u(kb.elem).u(vb.elem).f(0.0f);
    const std::string consts = "const KTYPE: u32 = " + std::to_string(m.kt) + "u;\nconst VTYPE: u32 = " +
                               std::to_string(m.vt) + "u;\n";
    dispatch(dev_->pipeline("kv_store." + std::to_string(m.kt) + std::to_string(m.vt), consts + src("reduce") + src("attention"),
                            "kv_store", "usssss"),
             "kv_store", params(p.w, p.n * 4),
             {kb, vb, bind_whole(m.k, m.k_bytes), bind_whole(m.v, m.v_bytes), mb}, uint32_t(kv.n_kv_head()),
             uint32_t(k.rows), 1);
}

void WebGpuBackend::attention_impl(const ops::KVLayer& kv, ops::Tensor q, ops::Tensor out, int n_head, float scale_f,
                                   const ops::AttentionCall* call, int64_t lo, int64_t hi) {
    const int hd = kv.head_dim();
    if (n_head <= 0 || n_head % kv.n_kv_head() != 0 || q.cols != int64_t(n_head) * hd || out.cols != q.cols ||
        out.rows != q.rows)
        throw Error("[webgpu.attention] " + std::to_string(n_head) + " heads of " + std::to_string(hd) + " over " +
                    std::to_string(kv.n_kv_head()) + " KV heads for rows of " + std::to_string(q.cols));
    if (hd > 512) throw ModelError("[webgpu.attention] head_dim " + std::to_string(hd) + " above 512");
    if (q.rows == 0) return;
    KVMirror& m = mirror(kv);
    const Bind qb = bind_tensor(q.data, q.size(), "attention"), ob = bind_tensor(out.data, out.size(), "attention");
    Bind mb{};
    if (call && call->key_end) {
        std::vector<uint32_t> ke(static_cast<size_t>(q.rows));
        for (int64_t t = 0; t < q.rows; ++t) {
            if (call->key_end[t] < call->pos0 + t)
                throw InputError("[attention] key_end[" + std::to_string(t) + "] is before the query's position");
            ke[size_t(t)] = u32_of(call->key_end[t], "attention", "key_end");
        }
        mb = upload(ke.data(), ke.size() * 4);
    }
    Pn p;
    p.u(q.rows).u(n_head).u(kv.n_kv_head()).u(hd).u(qb.elem).u(ob.elem).u(m.cap).u(kv.sliding() ? 1 : 0);
    p.u(call ? u32_of(call->pos0, "attention", "position") : 0).u(call ? u32_of(call->window, "attention", "window") : 0);
    p.u(call && call->key_end ? 1 : 0).u(mb.elem).u(call ? 0 : u32_of(lo, "attention", "lo"));
    p.u(call ? 0 : u32_of(hi, "attention", "hi")).u(call ? 0 : 1).u(0).u(0).f(call ? call->scale : scale_f);
    const std::string consts = "const KTYPE: u32 = " + std::to_string(m.kt) + "u;\nconst VTYPE: u32 = " +
                               std::to_string(m.vt) + "u;\n";
    dispatch(dev_->pipeline("attention." + std::to_string(m.kt) + std::to_string(m.vt), consts + src("reduce") + src("attention"),
                            "attention", "usssss"),
             "attention", params(p.w, p.n * 4), {qb, ob, bind_whole(m.k, m.k_bytes), bind_whole(m.v, m.v_bytes), mb},
             uint32_t(n_head), uint32_t(q.rows), 1);
}

void WebGpuBackend::attention(const ops::KVLayer& kv, ops::Tensor q, ops::Tensor out, const ops::AttentionCall& call) {
    attention_impl(kv, q, out, call.n_head, call.scale, &call, 0, 0);
}

void WebGpuBackend::attention_range(const ops::KVLayer& kv, ops::Tensor q, ops::Tensor out, int n_head, float scale_f,
                                    int64_t lo, int64_t hi) {
    if (lo < 0 || hi < lo) throw InputError("[webgpu.attention_range] empty key range");
    attention_impl(kv, q, out, n_head, scale_f, nullptr, lo, hi);
}

ops::Tensor WebGpuBackend::output_tensor(float*, int64_t rows, int64_t cols) {
    // distinct regions of one scratch buffer until the next flush (a forward may hand out
    // several: the drafter's next hidden state and its logits)
    const uint64_t need = (uint64_t(rows) * uint64_t(cols) + 63) / 64 * 64;
    if (!out_buf_ || out_used_ + need > out_buf_->n_floats()) {
        // a full or small buffer is replaced, the old one kept until the submission that
        // reads it is done
        // (sized for all this submission has asked for, so the next one fits in it)
        const uint64_t cap = std::max<uint64_t>(out_used_ + need, out_buf_ ? out_buf_->n_floats() : 0);
        if (out_buf_) retired_.push_back(std::move(out_buf_));
        out_buf_ = alloc(cap);
        out_used_ = 0;
    }
    ops::Tensor t{out_buf_->data() + out_used_, rows, cols};
    out_used_ += need;
    return t;
}

void WebGpuBackend::read(ops::Tensor x, float* host) {
    const uint64_t bytes = uint64_t(x.size()) * 4;
    if (bytes == 0) return;
    WGPUBuffer b;
    uint64_t off, total;
    if (!resolve_address(x.data, &b, &off, &total)) throw Error("[webgpu.read] not a WebGPU tensor");
    size_t si = staging_.size();
    for (size_t i = 0; i < staging_.size(); ++i)
        if (staging_[i].cap - staging_[i].used >= bytes) { si = i; break; }
    if (si == staging_.size()) {
        Staging s;
        s.cap = Device::padded_size(std::max<uint64_t>(bytes, 1 << 20));
        s.buf = dev_->create_buffer(s.cap, WGPUBufferUsage_MapRead | WGPUBufferUsage_CopyDst, "a read-back buffer");
        staging_.push_back(s);
    }
    Staging& s = staging_[si];
    end_pass();
    ensure_encoder();
    dev_->api().wgpuCommandEncoderCopyBufferToBuffer(enc_, b, off, s.buf, s.used, bytes);
    reads_.push_back(PendingRead{si, s.used, bytes, host});
    s.used += Device::padded_size(bytes);
    if (!in_forward_) flush();
}

void WebGpuBackend::write(ops::Tensor x, const float* host) {
    const uint64_t bytes = uint64_t(x.size()) * 4;
    if (bytes == 0) return;
    WGPUBuffer b;
    uint64_t off, total;
    if (!resolve_address(x.data, &b, &off, &total)) throw Error("[webgpu.write] not a WebGPU tensor");
    // in order with the recorded kernels: a copy from the upload arena, not a queue write
    const Bind u = upload(host, bytes);
    end_pass();
    ensure_encoder();
    dev_->api().wgpuCommandEncoderCopyBufferToBuffer(enc_, u.buf, u.offset, b, off, bytes);
    if (!in_forward_) flush();
}

}  // namespace unigemma::webgpu
