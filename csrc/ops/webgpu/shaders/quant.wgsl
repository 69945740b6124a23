// Weight decoding shared by the kernels that read a GGUF matrix: W is the matrix (or a chunk of
// its rows) as the file stores it, bound as u32 words; a row starts at a byte offset (rows are
// row_bytes apart, which need not be a multiple of 4: Q4_0 blocks are 18 bytes). Every block
// field the formats use is 2-byte aligned, so a half-word read never straddles three bytes.
// load32(row, g) decodes elements [32 g, 32 g + 32) of a row into DQ, in the CPU's formulas
// (quant/): blocks of 32 (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) or 32-element sub-blocks of the
// 256-element K-quant super-blocks (Q4_K, Q5_K, Q6_K). WTYPE (the GGML type id) is prepended
// as a constant, so each type compiles to its own branch-free kernel.

var<private> DQ: array<f32, 32>;

fn wbyte(o: u32) -> u32 { return (W[o >> 2u] >> ((o & 3u) * 8u)) & 0xffu; }
fn wu16(o: u32) -> u32 { return (W[o >> 2u] >> ((o & 2u) * 8u)) & 0xffffu; }
fn wf16(o: u32) -> f32 { return unpack2x16float(wu16(o)).x; }
fn wi8(o: u32) -> i32 { return i32(wbyte(o) << 24u) >> 24u; }
fn wu32(o: u32) -> u32 { return wu16(o) | (wu16(o + 2u) << 16u); }

// K-quant scale / min j (0..7) of a super-block's 12 packed 6-bit pairs at byte offset s
fn scale_k4(s: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(wbyte(s + j) & 63u), f32(wbyte(s + j + 4u) & 63u));
    }
    let sc = (wbyte(s + j + 4u) & 0xfu) | ((wbyte(s + j - 4u) >> 6u) << 4u);
    let m = (wbyte(s + j + 4u) >> 4u) | ((wbyte(s + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// n_valid: elements of this group inside the row (float types: the row's tail; quantized
// rows are whole blocks, so always 32 there)
fn load32(row: u32, g: u32, n_valid: u32) {
    if (WTYPE == 0u) {  // F32
        for (var i = 0u; i < 32u; i++) {
            DQ[i] = select(0.0, bitcast<f32>(W[(row >> 2u) + g * 32u + i]), i < n_valid);
        }
    } else if (WTYPE == 1u) {  // F16
        for (var i = 0u; i < 32u; i++) {
            DQ[i] = select(0.0, wf16(row + (g * 32u + i) * 2u), i < n_valid);
        }
    } else if (WTYPE == 30u) {  // BF16: the high half of an f32
        for (var i = 0u; i < 32u; i++) {
            DQ[i] = select(0.0, bitcast<f32>(wu16(row + (g * 32u + i) * 2u) << 16u), i < n_valid);
        }
    } else if (WTYPE == 8u) {  // Q8_0: d (f16), 32 x int8
        let b = row + g * 34u;
        let d = wf16(b);
        for (var i = 0u; i < 32u; i++) { DQ[i] = f32(wi8(b + 2u + i)) * d; }
    } else if (WTYPE == 2u) {  // Q4_0: d, 16 bytes of nibbles (low: 0..15, high: 16..31), offset 8
        let b = row + g * 18u;
        let d = wf16(b);
        for (var i = 0u; i < 16u; i++) {
            let q = wbyte(b + 2u + i);
            DQ[i] = f32(i32(q & 0xfu) - 8) * d;
            DQ[i + 16u] = f32(i32(q >> 4u) - 8) * d;
        }
    } else if (WTYPE == 3u) {  // Q4_1: d, m, nibbles: q * d + m
        let b = row + g * 20u;
        let d = wf16(b);
        let m = wf16(b + 2u);
        for (var i = 0u; i < 16u; i++) {
            let q = wbyte(b + 4u + i);
            DQ[i] = f32(q & 0xfu) * d + m;
            DQ[i + 16u] = f32(q >> 4u) * d + m;
        }
    } else if (WTYPE == 6u) {  // Q5_0: d, qh (32 fifth bits), nibbles; offset 16
        let b = row + g * 22u;
        let d = wf16(b);
        let qh = wu32(b + 2u);
        for (var i = 0u; i < 16u; i++) {
            let q = wbyte(b + 6u + i);
            let h0 = ((qh >> i) << 4u) & 0x10u;
            let h1 = (qh >> (i + 12u)) & 0x10u;
            DQ[i] = f32(i32((q & 0xfu) | h0) - 16) * d;
            DQ[i + 16u] = f32(i32((q >> 4u) | h1) - 16) * d;
        }
    } else if (WTYPE == 7u) {  // Q5_1: d, m, qh, nibbles: q * d + m
        let b = row + g * 24u;
        let d = wf16(b);
        let m = wf16(b + 2u);
        let qh = wu32(b + 4u);
        for (var i = 0u; i < 16u; i++) {
            let q = wbyte(b + 8u + i);
            let h0 = ((qh >> i) << 4u) & 0x10u;
            let h1 = (qh >> (i + 12u)) & 0x10u;
            DQ[i] = f32((q & 0xfu) | h0) * d + m;
            DQ[i + 16u] = f32((q >> 4u) | h1) * d + m;
        }
    } else if (WTYPE == 12u) {  // Q4_K: d, dmin, 12 scale bytes, 128 nibble bytes; 144 per 256
        let b = row + (g >> 3u) * 144u;
        let j = g & 7u;
        let sm = scale_k4(b + 4u, j);
        let d1 = wf16(b) * sm.x;
        let m1 = wf16(b + 2u) * sm.y;
        let q = b + 16u + (j >> 1u) * 32u;
        let sh = (j & 1u) * 4u;
        for (var i = 0u; i < 32u; i++) { DQ[i] = d1 * f32((wbyte(q + i) >> sh) & 0xfu) - m1; }
    } else if (WTYPE == 13u) {  // Q5_K: d, dmin, 12 scale bytes, 32 high-bit bytes, 128 nibble bytes; 176
        let b = row + (g >> 3u) * 176u;
        let j = g & 7u;
        let sm = scale_k4(b + 4u, j);
        let d1 = wf16(b) * sm.x;
        let m1 = wf16(b + 2u) * sm.y;
        let q = b + 48u + (j >> 1u) * 32u;
        let sh = (j & 1u) * 4u;
        for (var i = 0u; i < 32u; i++) {
            let hi = select(0u, 16u, ((wbyte(b + 16u + i) >> j) & 1u) != 0u);
            DQ[i] = d1 * f32(((wbyte(q + i) >> sh) & 0xfu) + hi) - m1;
        }
    } else if (WTYPE == 14u) {  // Q6_K: 128 low-nibble bytes, 64 high-pair bytes, 16 int8 scales, d; 210
        let b = row + (g >> 3u) * 210u;
        let j = g & 7u;
        let half = j >> 2u;
        let k = j & 3u;
        let d = wf16(b + 208u);
        let ql = b + half * 64u + (k & 1u) * 32u;
        let qh = b + 128u + half * 32u;
        let lsh = (k >> 1u) * 4u;
        let hsh = k * 2u;
        for (var i = 0u; i < 32u; i++) {
            let q = i32(((wbyte(ql + i) >> lsh) & 0xfu) | (((wbyte(qh + i) >> hsh) & 3u) << 4u)) - 32;
            let sc = f32(wi8(b + 192u + half * 8u + (i >> 4u) + 2u * k));
            DQ[i] = d * sc * f32(q);
        }
    }
}
