// Workgroup reductions over one value per thread, shared by the kernels that include this
// file: WG (the kernel's workgroup size, a power of two) is the including file's constant.
// A fixed tree: pairs (i, i + s) for s = WG/2, WG/4, ..., 1, so the order of every addition
// depends only on WG. Every thread gets the result; call in uniform control flow (barriers).

var<workgroup> red: array<f32, WG>;

fn tree_sum(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) { red[li] += red[li + s]; }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn tree_max(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) { red[li] = max(red[li], red[li + s]); }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}
