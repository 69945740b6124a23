// x[t] = E[tokens[t]] * scale (decoded from the table's type), or the host row embd[t] where
// kinds[t] != 0 (soft tokens, not scaled). One workgroup per row t; each thread decodes 32-element
// groups of the row. The table may be split into row chunks: a token outside this chunk is
// left to its chunk's dispatch.

struct P {
    cols: u32,
    row_bytes: u32,
    n_tok: u32,
    x_off: u32,
    meta_off: u32,    // tokens: META[meta_off + t]; kinds: META[kinds_off + t] (one per u32)
    kinds_off: u32,
    has_kinds: u32,
    embd_off: u32,    // EMBD[embd_off + t * cols + i]
    chunk_row0: u32,
    chunk_rows: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read_write> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> META: array<u32>;
@group(0) @binding(4) var<storage, read_write> EMBD: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = wid.x + wid.y * 65535u;
    if (t >= p.n_tok) { return; }
    let xb = p.x_off + t * p.cols;
    if (p.has_kinds != 0u && META[p.kinds_off + t] != 0u) {
        for (var i = li; i < p.cols; i += 64u) { X[xb + i] = EMBD[p.embd_off + t * p.cols + i]; }
        return;
    }
    let id = META[p.meta_off + t];
    if (id < p.chunk_row0 || id >= p.chunk_row0 + p.chunk_rows) { return; }
    let row = (id - p.chunk_row0) * p.row_bytes;
    let ng = (p.cols + 31u) / 32u;
    for (var g = li; g < ng; g += 64u) {
        let nv = min(32u, p.cols - g * 32u);
        load32(row, g, nv);
        for (var i = 0u; i < nv; i++) { X[xb + g * 32u + i] = DQ[i] * p.scale; }
    }
}
