// Element-wise ops over flat float32 ranges (a tensor is dense: rows * cols elements from its
// offset). One thread per element, 256 per workgroup, grid (x, y) for more than 65535 groups.
//   add: x += y   scale: x *= s   copy: x = y   gelu_tanh_mul: x = gelu_tanh(x) * y
//   softcap: x = cap * tanh(x / cap)   add_bias: x[t][i] += b[i]
//   add_table_rows: x[t][i] += (T[ra[t]][i] + T[rb[t]][i])
// gelu_tanh(v) = 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))); tanh is written out as
// 1 - 2 / (exp(2z) + 1) (exact at +-inf, no NaN for large |z|).

struct P {
    n: u32,
    cols: u32,
    x_off: u32,
    y_off: u32,
    meta_off: u32,  // add_table_rows: ra[t] at META[meta_off + t], rb[t] at META[meta_off + n_rows + t]
    n_rows: u32,
    s: f32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<storage, read_write> META: array<u32>;

fn tanh_safe(z: f32) -> f32 {
    if (abs(z) > 15.0) { return sign(z); }
    return 1.0 - 2.0 / (exp(2.0 * z) + 1.0);
}

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * 256u; }

@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < p.n) { X[p.x_off + i] = X[p.x_off + i] + Y[p.y_off + i]; }
}

@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < p.n) { X[p.x_off + i] = X[p.x_off + i] * p.s; }
}

@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < p.n) { X[p.x_off + i] = Y[p.y_off + i]; }
}

@compute @workgroup_size(256)
fn gelu_tanh_mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < p.n) {
        let v = X[p.x_off + i];
        let g = 0.5 * v * (1.0 + tanh_safe(0.7978845608028654 * (v + 0.044715 * v * v * v)));
        X[p.x_off + i] = g * Y[p.y_off + i];
    }
}

@compute @workgroup_size(256)
fn softcap(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < p.n) { X[p.x_off + i] = p.s * tanh_safe(X[p.x_off + i] * (1.0 / p.s)); }
}

@compute @workgroup_size(256)
fn add_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < p.n) { X[p.x_off + i] = X[p.x_off + i] + Y[p.y_off + i % p.cols]; }
}

@compute @workgroup_size(256)
fn add_table_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < p.n) {
        let t = i / p.cols;
        let c = i % p.cols;
        let ra = META[p.meta_off + t];
        let rb = META[p.meta_off + p.n_rows + t];
        X[p.x_off + i] = X[p.x_off + i] + (Y[p.y_off + ra * p.cols + c] + Y[p.y_off + rb * p.cols + c]);
    }
}
