// y[t][col0 + o] = dot(W[row(o)], x[t]) for a chunk of a GGUF matrix's rows, float32 activations
// (no activation quantization: the result is the exact product of the decoded weights, up to
// float32 summation). One workgroup per output o and group of up to 8 tokens: its 64 threads
// take the row's 32-element groups round-robin (thread i: groups i, i + 64, ...), each keeps one
// partial sum per token, then a fixed tree adds the partials. Short rows (few groups) share a
// workgroup: tpr threads per row (a power of two, min(64, groups rounded up)), 64 / tpr rows
// per workgroup, thread j of a row taking groups j, j + tpr, ... The order of every addition
// depends only on the row length (tpr is a function of it), never on how many tokens the call
// holds: a token gives the same bits alone (decode), in a verify batch or inside a prefill.
// ids (matmul_rows): output o reads matrix row IDS[o]; rows outside this chunk are left to the
// dispatch of the chunk that holds them.

struct P {
    rows: u32,        // outputs of this dispatch (chunk rows, or ids)
    cols: u32,
    row_bytes: u32,
    n_tok: u32,
    x_off: u32,       // element offsets into the bound windows
    x_stride: u32,
    y_off: u32,
    y_stride: u32,
    y_col0: u32,      // first output column of this chunk (0 with ids)
    use_ids: u32,
    ids_off: u32,
    chunk_row0: u32,  // first matrix row held by W (ids are global rows)
    chunk_rows: u32,
    per_dim: u32,     // workgroups per grid row (grid x limit)
    tpr: u32,         // threads per output row
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read_write> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@group(0) @binding(4) var<storage, read_write> IDS: array<u32>;

const WG: u32 = 64u;
const TB: u32 = 8u;
var<workgroup> red: array<f32, 512>;  // [TB][WG]

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lane = li / p.tpr;
    let lj = li % p.tpr;
    let o = (wid.x + wid.y * p.per_dim) * (WG / p.tpr) + lane;
    var r = o;
    // neither is uniform (lanes differ; ids come from storage): no early return before the barriers
    var mine = o < p.rows;
    if (mine && p.use_ids != 0u) {
        let gr = IDS[p.ids_off + o];
        mine = gr >= p.chunk_row0 && gr < p.chunk_row0 + p.chunk_rows;
        r = select(0u, gr - p.chunk_row0, mine);
    }
    let t0 = wid.z * TB;
    let nt = min(TB, p.n_tok - t0);
    var acc: array<f32, 8>;
    let ng = select(0u, (p.cols + 31u) / 32u, mine);
    let row = r * p.row_bytes;
    for (var g = lj; g < ng; g += p.tpr) {
        let c0 = g * 32u;
        load32(row, g, min(32u, p.cols - c0));
        for (var t = 0u; t < TB; t++) {
            if (t < nt) {
                let xb = p.x_off + (t0 + t) * p.x_stride + c0;
                var s = 0.0;
                let nv = min(32u, p.cols - c0);
                for (var i = 0u; i < nv; i++) { s += DQ[i] * X[xb + i]; }
                acc[t] += s;
            }
        }
    }
    for (var t = 0u; t < TB; t++) { red[t * WG + li] = acc[t]; }
    workgroupBarrier();
    for (var s = p.tpr / 2u; s > 0u; s >>= 1u) {
        if (lj < s) {
            for (var t = 0u; t < TB; t++) { red[t * WG + li] += red[t * WG + li + s]; }
        }
        workgroupBarrier();
    }
    if (mine && lj == 0u) {
        for (var t = 0u; t < nt; t++) {
            Y[p.y_off + (t0 + t) * p.y_stride + p.y_col0 + o] = red[t * WG + li];
        }
    }
}
