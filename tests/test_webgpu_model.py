"""The whole text model on the WebGPU backend (Mesa's lavapipe where there is no GPU): logits
against transformers on the tiny configs (F32 weights and cache, the CPU parity tests'
configs and bound), greedy continuations equal to the CPU backend's, decode steps equal to
the prefill, and the real Gemma 3 270M against the CPU backend."""
from __future__ import annotations

import numpy as np
import pytest

import unigemma.webgpu  # noqa: F401
from unigemma import _core as core
from test_text_model import CONFIGS, WINDOW, gguf_of, hf_logits, prompt, rel_l2  # noqa: F401
from webgpu_device import adapter


@pytest.fixture(scope="module", autouse=True)
def gpu():
    return adapter()


def gpu_ctx(m, **kw):
    kw.setdefault("k_type", "f32")
    kw.setdefault("v_type", "f32")
    return core.Context(m, backend="webgpu", **kw)


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_match_transformers_f32(name, gguf_of, hf_model):
    w = WINDOW[name]
    ids = prompt(11 + len(name), 2 * w + 9)
    ref = hf_logits(hf_model(name), ids)
    m = core.TextModel(gguf_of(name))
    ours = gpu_ctx(m, n_ctx=128, n_ubatch=7).eval(ids, all_logits=True)
    err = rel_l2(ours, ref)
    assert err.max() < 1e-4, (name, err.max(), err.argmax())


@pytest.mark.parametrize("name", CONFIGS)
def test_greedy_equals_cpu_and_decode_equals_prefill(name, gguf_of):
    m = core.TextModel(gguf_of(name))
    ids = prompt(5, 2 * WINDOW[name] + 3)
    outs = {}
    for be in ("cpu", "webgpu"):
        ctx = core.Context(m, n_ctx=128, k_type="f32", v_type="f32", backend=be)
        logits = ctx.eval(ids)
        got = []
        for _ in range(12):
            t = int(np.argmax(logits[0]))
            got.append(t)
            logits = ctx.eval(np.array([t], np.int32))
        outs[be] = got
    assert outs["webgpu"] == outs["cpu"]
    # each decode step's logits are bitwise the prefill's row for that position (row-invariant
    # kernels: what lossless speculative verification relies on)
    seq = np.concatenate([ids, np.array(outs["webgpu"][:6], np.int32)])
    full = gpu_ctx(m, n_ctx=128).eval(seq, all_logits=True)
    ctx = gpu_ctx(m, n_ctx=128)
    ctx.eval(seq[:len(ids)])
    for i in range(len(ids), len(seq)):
        step = ctx.eval(seq[i:i + 1])
        np.testing.assert_array_equal(step[0], full[i])


@pytest.mark.parametrize("kv", ["f16", "q8_0"])
def test_quantized_cache_and_reuse(kv, gguf_of):
    """F16 / Q8_0 KV cache on the device (quantized as the CPU does) against the CPU with the
    same cache type; truncating and continuing reuses the device cache."""
    m = core.TextModel(gguf_of("default"))
    ids = prompt(9, 50)
    cpu = core.Context(m, n_ctx=128, k_type=kv, v_type=kv).eval(ids, all_logits=True)
    ctx = core.Context(m, n_ctx=128, k_type=kv, v_type=kv, backend="webgpu")
    g = ctx.eval(ids, all_logits=True)
    assert rel_l2(g, cpu).max() < 1e-3
    # truncate and continue: the cache on the device keeps the prefix
    assert ctx.truncate(30)
    again = ctx.eval(ids[30:], all_logits=True)
    np.testing.assert_array_equal(again, g[30:])


@pytest.mark.slow  # the real 270M on lavapipe: ~25 s
def test_real_gemma3_270m_against_cpu():
    from unigemma import default_model_path

    m = core.TextModel(str(default_model_path()))
    tok = core.Tokenizer(core.GGUFFile(str(default_model_path()), True))
    text = ("The river ran high that spring, and the mill by the bridge worked day and night. "
            "Nobody in the village remembered a year like it, not even the oldest of them. "
            "When the water finally fell, the miller walked the banks to count what it had taken.")
    ids = np.array(tok.encode(text, add_bos=True), np.int32)[:40]
    cpu = core.Context(m, n_ctx=128, act_precision="q16").eval(ids, all_logits=True)
    gpu = core.Context(m, n_ctx=128, backend="webgpu").eval(ids, all_logits=True)

    def logsm(z):
        z = z.astype(np.float64)
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    lp, lq = logsm(cpu), logsm(gpu)
    kl = (np.exp(lp) * (lp - lq)).sum(-1).mean()
    top1 = (cpu.argmax(-1) == gpu.argmax(-1)).mean()
    print(f"\n[gemma3 270m, webgpu vs cpu q16] top-1 {top1:.4f}, mean KL {kl:.2e} over {len(ids)} tokens")
    assert top1 >= 0.99 and kl <= 1e-3, (top1, kl)


def test_speculative_decoding_on_the_gpu_is_lossless(hf_ckpt, tmp_path):
    """The MTP drafter on the GPU reads the target's device KV cache: greedy output equals
    plain greedy decoding on the GPU, and a draft step's logits equal the CPU drafter's over
    the CPU cache (so it reads the real keys: the tiny random drafter is never right, so
    acceptance cannot show it)."""
    import unigemma
    from unigemma.convert import convert

    convert(hf_ckpt("default"), outtype="f32", out_prefix=tmp_path / "d", assistant_dir=hf_ckpt("assistant_default"),
            progress=False)
    path = str(tmp_path / "d.gguf")
    prompt = [2] + np.random.default_rng(3).integers(300, 2200, size=35).tolist()
    plain = unigemma.Model(path, n_ctx=128, kv_type="f32", device="gpu").generate(prompt, max_tokens=16, stop_tokens=[])
    m = unigemma.Model(path, n_ctx=128, kv_type="f32", device="gpu", draft=str(tmp_path / "d-assistant.gguf"),
                       draft_tokens=3)
    r = m.generate(prompt, max_tokens=16, stop_tokens=[])
    assert r.tokens == plain.tokens
    assert r.stats["drafted"] > 0, r.stats
    t = core.TextModel(path)
    a = core.AssistantModel(str(tmp_path / "d-assistant.gguf"))
    h0 = np.random.default_rng(1).standard_normal(t.hparams["n_embd"]).astype(np.float32)
    steps = {}
    for be in ("cpu", "webgpu"):
        ctx = core.Context(t, n_ctx=64, k_type="f32", v_type="f32", backend=be)
        ctx.eval(np.array(prompt[:30], np.int32))
        steps[be] = core.Drafter(a, t, backend=be).step(ctx, prompt[30], 30, h0)
    for got, want in zip(steps["webgpu"], steps["cpu"]):
        assert rel_l2(np.asarray(got), np.asarray(want)) < 1e-4
    # a drafter reading the wrong cache (the host copy of a GPU context) is refused, not silent
    d = core.Drafter(a, t)
    ctx = core.Context(t, n_ctx=64, backend="webgpu")
    ctx.eval(np.array(prompt[:8], np.int32))
    with pytest.raises(core.InputError, match="runs on webgpu"):
        d.step(ctx, prompt[8], 8, np.zeros(t.hparams["n_embd"], np.float32))


def test_images_and_audio_on_the_gpu_match_transformers(hf_ckpt, hf_model, tmp_path):
    """Projector and text model on the GPU: two images (bidirectional blocks longer than the
    sliding window) and an audio clip, all-position logits against transformers within 1e-4
    relative L2; the projector's embeddings against the CPU projector's."""
    import unigemma
    from unigemma.convert import convert
    from synthetic_media import media_inputs
    from test_multimodal import PROMPT, hf_reference

    res = convert(hf_ckpt("default"), outtype="f32", out_prefix=tmp_path / "mm", progress=False)
    img1, img2, audio = media_inputs(3)
    media = [("image", img1), ("image", img2), ("audio", audio)]
    m = unigemma.Model(str(res.text), mmproj=str(res.mmproj), image_tokens=70, n_ctx=512, kv_type="f32",
                       n_ubatch=64, device="gpu")
    ours = m.logits(PROMPT, media=media)
    ids = np.asarray(m._text_prompt(PROMPT, media, add_bos=True).ids)
    ref = hf_reference(hf_model("default"), ids, [img1, img2], audio, 70)
    err = float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))
    assert err < 1e-4, err
    cpu = unigemma.Model(str(res.text), mmproj=str(res.mmproj), image_tokens=70, n_ctx=512, kv_type="f32",
                         n_ubatch=64)
    for g, c in ((m.embed_image(img1), cpu.embed_image(img1)), (m.embed_audio(audio), cpu.embed_audio(audio))):
        assert g.shape == c.shape
        assert float(((g - c) ** 2).sum() / (c ** 2).sum()) <= 1e-7


def test_device_errors_and_fallback(gguf_of):
    """No adapter (hidden by UNIGEMMA_WEBGPU=0): device='gpu' raises DeviceError naming why,
    'auto' runs on the CPU and says why; a model larger than the GPU budget is refused before
    anything is allocated; a bad device name is an InputError."""
    import subprocess
    import sys

    path = gguf_of("default")
    code = f"""
import unigemma
try:
    unigemma.Model({path!r}, device="gpu")
    print("NO ERROR")
except unigemma.DeviceError as e:
    print("DeviceError:", e)
m = unigemma.Model({path!r}, device="auto")
print("auto:", m.backend, "|", m.device_note)
print(m.generate([2, 300, 400], max_tokens=3, stop_tokens=[]).tokens)
"""
    env = dict(__import__("os").environ, UNIGEMMA_WEBGPU="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "DeviceError: [webgpu] no GPU adapter: UNIGEMMA_WEBGPU=0" in out.stdout, out.stdout
    assert "auto: cpu | [webgpu] no GPU adapter" in out.stdout
    # the only adapter here is lavapipe: 'auto' keeps to the CPU and says so
    import unigemma

    m = unigemma.Model(path, device="auto")
    if unigemma.webgpu.open_device()["adapter_type"] == "CPU":
        assert m.backend == "cpu" and "software" in m.device_note
    env = dict(__import__("os").environ, UNIGEMMA_GPU_MEMORY_MB="1")
    code = f"import unigemma\ntry:\n    unigemma.Model({path!r}, device='gpu')\nexcept unigemma.DeviceError as e:\n    print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "MiB on the GPU" in out.stdout and "UNIGEMMA_GPU_MEMORY_MB=1" in out.stdout, (out.stdout, out.stderr)
    with pytest.raises(unigemma.InputError, match="device must be"):
        unigemma.Model(path, device="tpu")
