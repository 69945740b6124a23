// Row norms, one workgroup of 256 threads per row (or per head of a row): the sums are a
// fixed tree over 256 per-thread partials (thread i adds elements i, i + 256, ... in order),
// so a row's bits never depend on the other rows of the call (reduce.wgsl).
//   rms_norm:       y = x * (1 / sqrt(mean(x^2) + eps)) * w          (w optional)
//   head_norm_rope: per head of head_dim: x = rms_norm(x) * w, then NeoX RoPE at pos[t]:
//                   (a, b) = (x[i], x[i + hd/2]) -> (a c - b s, a s + b c), theta = pos * inv_freq[i]
//   layer_norm:     y = (x - mean) * rstd * w + b, two passes (mean, then squared deviations):
//                   float32 here (WGSL has no portable f64); the two-pass form keeps the
//                   variance of pixel rows (mean far from 0) accurate to float32 rounding.
//                   With a permutation: y[i] takes x[src[i]].

struct P {
    rows: u32,
    cols: u32,       // row length (head_norm_rope: head_dim)
    heads: u32,      // head_norm_rope: heads per row (else 1)
    x_off: u32,
    y_off: u32,
    has_w: u32,
    w_off: u32,
    has_b: u32,
    b_off: u32,
    has_rope: u32,
    meta_off: u32,   // head_norm_rope: pos[t] as u32 in META; layer_norm: src[i]
    has_src: u32,
    freq_off: u32,   // inv_freq in AUX (head_dim / 2)
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<storage, read_write> V: array<f32>;     // the weight vector
@group(0) @binding(4) var<storage, read_write> META: array<u32>;
@group(0) @binding(5) var<storage, read_write> AUX: array<f32>;   // bias (layer_norm) or inv_freq (RoPE)

const WG: u32 = 256u;  // reduce.wgsl's tree_sum over the workgroup

@compute @workgroup_size(256)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = wid.x + wid.y * 65535u;
    if (t >= p.rows) { return; }
    let xb = p.x_off + t * p.cols;
    let yb = p.y_off + t * p.cols;
    var ss = 0.0;
    for (var i = li; i < p.cols; i += WG) { let v = X[xb + i]; ss += v * v; }
    let r = 1.0 / sqrt(tree_sum(li, ss) / f32(p.cols) + p.eps);
    for (var i = li; i < p.cols; i += WG) {
        var v = X[xb + i] * r;
        if (p.has_w != 0u) { v = v * V[p.w_off + i]; }
        Y[yb + i] = v;
    }
}

@compute @workgroup_size(256)
fn head_norm_rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = wid.y;
    let h = wid.x;
    let hd = p.cols;
    let xb = p.x_off + (t * p.heads + h) * hd;
    var ss = 0.0;
    for (var i = li; i < hd; i += WG) { let v = X[xb + i]; ss += v * v; }
    let r = 1.0 / sqrt(tree_sum(li, ss) / f32(hd) + p.eps);
    if (p.has_rope == 0u) {
        for (var i = li; i < hd; i += WG) {
            var v = X[xb + i] * r;
            if (p.has_w != 0u) { v = v * V[p.w_off + i]; }
            X[xb + i] = v;
        }
        return;
    }
    let half = hd / 2u;
    let pos = f32(META[p.meta_off + t]);
    for (var i = li; i < half; i += WG) {
        var a = X[xb + i] * r;
        var b = X[xb + i + half] * r;
        if (p.has_w != 0u) { a = a * V[p.w_off + i]; b = b * V[p.w_off + i + half]; }
        let th = pos * AUX[p.freq_off + i];
        let c = cos(th);
        let s = sin(th);
        X[xb + i] = a * c - b * s;
        X[xb + i + half] = a * s + b * c;
    }
}

@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = wid.x + wid.y * 65535u;
    if (t >= p.rows) { return; }
    let xb = p.x_off + t * p.cols;
    let yb = p.y_off + t * p.cols;
    var s = 0.0;
    for (var i = li; i < p.cols; i += WG) { s += X[xb + i]; }
    let mean = tree_sum(li, s) / f32(p.cols);
    var v = 0.0;
    for (var i = li; i < p.cols; i += WG) { let d = X[xb + i] - mean; v += d * d; }
    let rstd = 1.0 / sqrt(tree_sum(li, v) / f32(p.cols) + p.eps);
    for (var i = li; i < p.cols; i += WG) {
        var j = i;
        if (p.has_src != 0u) { j = META[p.meta_off + i]; }
        var y = (X[xb + j] - mean) * rstd;
        if (p.has_w != 0u) { y = y * V[p.w_off + i]; }
        if (p.has_b != 0u) { y = y + AUX[p.b_off + i]; }
        Y[yb + i] = y;
    }
}
