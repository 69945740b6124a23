// KV cache on the device and attention over it.
//
// Device cache layout (ours, not the host's): slot s, KV head h, element i of head_dim hd at
//   F32: word (s * n_kv + h) * hd + i
//   F16: half i of the row of ceil(hd / 2) words starting at word (s * n_kv + h) * ceil(hd / 2),
//        so every head row starts on a word and the store never shares a word between rows.
//   Q8_0: rows of hd / 32 blocks of 9 words: the scale d (float32 holding the f16-rounded value
//        the CPU's block stores) and 32 int8 (4 per word); element = q * d, as the CPU decodes.
//        Quantized as the CPU does: d = max|x| / 127, q = round-half-even(x / d).
// KTYPE / VTYPE (0: F32, 1: F16, 8: Q8_0) are prepended as constants.
//
// kv_store: one workgroup per (row t, KV head h); row t goes to the slot of position pos[t]
// (sliding: pos mod cap; full layers: pos).
// attention: one workgroup of 64 threads per (query row t, head h), GQA head h / (n_head / n_kv).
// Query t at position pos0 + t sees keys [lo, hi]: lo = max(0, pos - window + 1) (window 0:
// 0), hi = key_end[t] when given (image blocks on sliding layers) else pos; attention_range:
// every row sees [lo, hi] of the call. Keys go in chunks of 64 (thread j scores key j of the
// chunk against q, kept in workgroup memory) with an online softmax: m = running max,
// l = running sum of exp(s - m), acc = running sum of exp(s - m) v, rescaled by
// exp(m_old - m_new) when the max grows; out = acc / l. Thread i owns output elements i,
// i + 64, ... (head_dim <= 512).

struct P {
    n_tok: u32,
    n_head: u32,
    n_kv: u32,
    hd: u32,
    q_off: u32,
    o_off: u32,
    cap: u32,
    sliding: u32,
    pos0: u32,
    window: u32,
    has_key_end: u32,
    meta_off: u32,   // key_end[t] (attention) or pos[t] (kv_store) in META
    range_lo: u32,
    range_hi: u32,
    use_range: u32,
    k_off: u32,      // kv_store: element offsets of the k / v source rows
    v_off: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> Q: array<f32>;   // q rows (attention) / k rows (kv_store)
@group(0) @binding(2) var<storage, read_write> O: array<f32>;   // out rows (attention) / v rows (kv_store)
@group(0) @binding(3) var<storage, read_write> KC: array<u32>;
@group(0) @binding(4) var<storage, read_write> VC: array<u32>;
@group(0) @binding(5) var<storage, read_write> META: array<u32>;

fn row_words(hd: u32, ty: u32) -> u32 {
    if (ty == 8u) { return hd / 32u * 9u; }
    return select(hd, (hd + 1u) / 2u, ty == 1u);
}

fn k_at(base: u32, i: u32) -> f32 {
    if (KTYPE == 1u) { return unpack2x16float(KC[base + (i >> 1u)])[i & 1u]; }
    if (KTYPE == 8u) {
        let b = base + (i >> 5u) * 9u;
        let j = i & 31u;
        let q = i32((KC[b + 1u + (j >> 2u)] >> ((j & 3u) * 8u)) << 24u) >> 24;
        return f32(q) * bitcast<f32>(KC[b]);
    }
    return bitcast<f32>(KC[base + i]);
}
fn v_at(base: u32, i: u32) -> f32 {
    if (VTYPE == 1u) { return unpack2x16float(VC[base + (i >> 1u)])[i & 1u]; }
    if (VTYPE == 8u) {
        let b = base + (i >> 5u) * 9u;
        let j = i & 31u;
        let q = i32((VC[b + 1u + (j >> 2u)] >> ((j & 3u) * 8u)) << 24u) >> 24;
        return f32(q) * bitcast<f32>(VC[b]);
    }
    return bitcast<f32>(VC[base + i]);
}

fn src_at(i: u32, from_q: bool) -> f32 {
    if (from_q) { return Q[i]; }
    return O[i];
}

// One Q8_0 block of 32 floats from `src` (element offset; the k rows in Q, the v rows in O)
// as 9 words: d then the int8s.
fn q8_block(src: u32, from_q: bool) -> array<u32, 9> {
    var out: array<u32, 9>;
    var amax = 0.0;
    for (var j = 0u; j < 32u; j++) { amax = max(amax, abs(src_at(src + j, from_q))); }
    let d = amax / 127.0;
    let id = select(0.0, 1.0 / d, d != 0.0);
    out[0] = bitcast<u32>(unpack2x16float(pack2x16float(vec2<f32>(d, 0.0))).x);
    for (var w = 0u; w < 8u; w++) {
        var word = 0u;
        for (var k = 0u; k < 4u; k++) {
            let x = src_at(src + w * 4u + k, from_q);
            let q = i32(round(x * id));
            word = word | ((u32(q) & 0xffu) << (k * 8u));
        }
        out[1u + w] = word;
    }
    return out;
}
fn slot_of(pos: u32) -> u32 { return select(pos, pos % p.cap, p.sliding != 0u); }

@compute @workgroup_size(64)
fn kv_store(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let h = wid.x;
    let t = wid.y;
    let s = slot_of(META[p.meta_off + t]);
    let src_k = p.k_off + (t * p.n_kv + h) * p.hd;
    let src_v = p.v_off + (t * p.n_kv + h) * p.hd;
    let kw = row_words(p.hd, KTYPE);
    let vw = row_words(p.hd, VTYPE);
    if (KTYPE == 8u) {
        for (var b = li; b < p.hd / 32u; b += 64u) {
            let blk = q8_block(src_k + b * 32u, true);
            for (var w = 0u; w < 9u; w++) { KC[(s * p.n_kv + h) * kw + b * 9u + w] = blk[w]; }
        }
    }
    if (VTYPE == 8u) {
        for (var b = li; b < p.hd / 32u; b += 64u) {
            let blk = q8_block(src_v + b * 32u, false);
            for (var w = 0u; w < 9u; w++) { VC[(s * p.n_kv + h) * vw + b * 9u + w] = blk[w]; }
        }
    }
    for (var w = li; w < select(kw, 0u, KTYPE == 8u); w += 64u) {
        let dst = (s * p.n_kv + h) * kw + w;
        if (KTYPE == 1u) {
            let i = 2u * w;
            let b = select(0.0, Q[src_k + i + 1u], i + 1u < p.hd);
            KC[dst] = pack2x16float(vec2<f32>(Q[src_k + i], b));
        } else {
            KC[dst] = bitcast<u32>(Q[src_k + w]);
        }
    }
    for (var w = li; w < select(vw, 0u, VTYPE == 8u); w += 64u) {
        let dst = (s * p.n_kv + h) * vw + w;
        if (VTYPE == 1u) {
            let i = 2u * w;
            let b = select(0.0, O[src_v + i + 1u], i + 1u < p.hd);
            VC[dst] = pack2x16float(vec2<f32>(O[src_v + i], b));
        } else {
            VC[dst] = bitcast<u32>(O[src_v + w]);
        }
    }
}

const WG: u32 = 64u;  // reduce.wgsl's tree_max / tree_sum over the workgroup
var<workgroup> qs: array<f32, 512>;
var<workgroup> ps: array<f32, 64>;
var<workgroup> wg_hi: u32;

@compute @workgroup_size(64)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let h = wid.x;
    let t = wid.y;
    let hd = p.hd;
    let kvh = h / (p.n_head / p.n_kv);
    let qb = p.q_off + (t * p.n_head + h) * hd;
    for (var i = li; i < hd; i += WG) { qs[i] = Q[qb + i]; }
    if (li == 0u) { wg_hi = select(p.pos0 + t, META[p.meta_off + t], p.has_key_end != 0u); }
    workgroupBarrier();
    var lo: u32;
    var hi: u32;
    if (p.use_range != 0u) {
        lo = p.range_lo;
        hi = p.range_hi;
    } else {
        let pos = p.pos0 + t;
        lo = 0u;
        if (p.window > 0u && pos + 1u > p.window) { lo = pos + 1u - p.window; }
        hi = pos;
        // key_end comes from storage: made uniform (the loop below holds barriers)
        hi = workgroupUniformLoad(&wg_hi);
    }
    let kw = row_words(hd, KTYPE);
    let vw = row_words(hd, VTYPE);
    var m = -3.0e38;
    var l = 0.0;
    var acc: array<f32, 8>;
    for (var k0 = lo; k0 <= hi; k0 += WG) {
        let key = k0 + li;
        var s = -3.0e38;
        if (key <= hi) {
            let kb = (slot_of(key) * p.n_kv + kvh) * kw;
            var d = 0.0;
            for (var i = 0u; i < hd; i++) { d += qs[i] * k_at(kb, i); }
            s = d * p.scale;
        }
        let m_new = max(m, tree_max(li, s));
        let alpha = exp(m - m_new);
        var e = 0.0;
        if (key <= hi) { e = exp(s - m_new); }
        ps[li] = e;
        l = l * alpha + tree_sum(li, e);
        let nk = min(WG, hi + 1u - k0);
        for (var c = 0u; c < 8u; c++) {
            let i = li + c * WG;
            if (i < hd) {
                var a = acc[c] * alpha;
                for (var j = 0u; j < nk; j++) {
                    a += ps[j] * v_at((slot_of(k0 + j) * p.n_kv + kvh) * vw, i);
                }
                acc[c] = a;
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    let ob = p.o_off + (t * p.n_head + h) * hd;
    for (var c = 0u; c < 8u; c++) {
        let i = li + c * WG;
        if (i < hd) { O[ob + i] = acc[c] / l; }
    }
}
