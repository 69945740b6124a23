"""MTP drafter (`_core.AssistantModel` + `_core.Drafter`) against transformers'
`Gemma4UnifiedAssistantForCausalLM` on the tiny random checkpoints (tests/fixtures/
tiny_checkpoints.py: assistant_default (ordered-embedding head), assistant_default_plain (the
same weights, full head), assistant_kv_shared, assistant_alt_layout), then every bad file,
mismatched pair and bad step argument raises a clear error.

The oracle's inputs are made the way transformers' assisted generate() makes them: the target
runs on a DynamicCache with past recording (as `_assisted_decoding` sets it), returning
`shared_kv_states` and the post-norm last hidden state; after each target forward the cache is
cropped (`crop(0)` restricts sliding layers to W - 1 entries); the drafter gets the K/V sliced
to `len(input_ids)` entries, the scaled target embedding of the round's token concatenated with
the hidden row, and the constant position `len(input_ids) - 1`. Rounds follow a prefill
(sliding K/V = the whole prompt) and a verification forward whose drafts were all accepted
(sliding K/V = W - 1 cached + the new entries), at positions beyond 2 * window, so the sliding
window rule (the last W + 1 entries: positions [pos - W - 1, pos - 1]) is what decides the
result; a check shows that W or W + 2 entries would not match. Bound: 1e-4 relative L2 on
logits and h_next per step (F32 weights, F32 K/V; measured ~1e-7..1e-6).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import unigemma
from unigemma import _core as core
from unigemma.convert import convert

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gguf_samples as gs  # noqa: E402

CASES = {  # case -> (target, HF drafter (oracle), our drafter file, centroid head)
    "default": ("default", "assistant_default", "assistant_default", True),
    "default_plain": ("default", "assistant_default_plain", "assistant_default", False),
    "kv_shared": ("kv_shared", "assistant_kv_shared", "assistant_kv_shared", True),
    "alt_layout": ("alt_layout", "assistant_alt_layout", "assistant_alt_layout", True),
}
TOL = 1e-4


def rel_l2(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def files(hf_ckpt, tmp_path_factory):
    """files(target) -> (text gguf, assistant gguf, centroid gguf) of one conversion."""
    root = tmp_path_factory.mktemp("asst")
    cache = {}

    def get(target: str):
        if target not in cache:
            r = convert(hf_ckpt(target), outtype="f32", out_prefix=root / target, progress=False,
                        assistant_dir=hf_ckpt("assistant_" + target))
            cache[target] = (str(r.text), str(r.assistant), str(r.centroids))
        return cache[target]

    return get


@pytest.fixture(scope="module")
def hf(hf_ckpt):
    """hf(name) -> transformers model (target or drafter), float32, eval."""
    import torch
    import tiny_checkpoints as tc
    from transformers import Gemma4UnifiedAssistantForCausalLM, Gemma4UnifiedForConditionalGeneration

    cache = {}

    def get(name: str):
        if name not in cache:
            cls = Gemma4UnifiedAssistantForCausalLM if name.startswith("assistant_") else \
                Gemma4UnifiedForConditionalGeneration
            with tc.patch_transformers_assistant():   # constructs drafters; marks the targets' store layers
                cache[name] = cls.from_pretrained(hf_ckpt(name), dtype=torch.float32).eval()
        return cache[name]

    return get


class Oracle:
    """transformers' side of assisted generation: the target on a past-recording DynamicCache,
    then drafter steps exactly as SinglePositionMultiTokenCandidateGenerator calls them."""

    def __init__(self, target, drafter):
        from transformers.cache_utils import DynamicCache

        self.target, self.drafter = target, drafter
        self.cache = DynamicCache(config=target.config.get_text_config())
        self.cache.activate_past_recording()
        self.n = 0

    def forward(self, ids):
        """Target forward of new ids (all accepted); returns (greedy next token, post-norm hidden row)."""
        import torch

        with torch.no_grad():
            out = self.target(input_ids=torch.tensor([list(ids)]), past_key_values=self.cache, use_cache=True,
                              output_hidden_states=True, return_shared_kv_states=True, logits_to_keep=1)
        self.cache.crop(0)   # what _assisted_decoding does after accepting every candidate
        self.n += len(ids)
        self.shared = dict(out.shared_kv_states)
        return int(out.logits[0, -1].argmax()), out.hidden_states[-1][:, -1:]

    def step(self, token, h, shared=None):
        """One drafter call at position self.n (input_ids = the n accepted ids + token)."""
        import torch

        cur = self.n + 1
        kv = shared if shared is not None else self.shared
        kv = {k: (v[0][:, :, :cur], v[1][:, :, :cur]) for k, v in kv.items()}
        with torch.no_grad():
            e = self.target.get_input_embeddings()(torch.tensor([[token]]))
            o = self.drafter(inputs_embeds=torch.cat([e, h], dim=-1), position_ids=torch.tensor([[self.n]]),
                             shared_kv_states=kv, use_cache=False)
        return o.logits[0, 0].numpy(), o.last_hidden_state


def run_round(oracle, drafter, ctx, token, h_ref, n_steps, errs):
    """n_steps draft steps on both sides (tokens: the oracle's argmax); returns the drafted ids."""
    pos = ctx.n_past
    assert pos == oracle.n
    h_ours = ctx.last_hidden[-1]
    assert rel_l2(h_ours, h_ref[0, 0].numpy()) < 1e-5   # Context.last_hidden == transformers' hidden_states[-1]
    drafted = []
    for _ in range(n_steps):
        ref_logits, h_ref = oracle.step(token, h_ref)
        logits, h_ours = drafter.step(ctx, token, pos, h_ours)
        errs.append((rel_l2(logits, ref_logits), rel_l2(h_ours, h_ref[0, 0].numpy())))
        assert int(np.argmax(logits)) == int(np.argmax(ref_logits))
        token = int(np.argmax(ref_logits))
        drafted.append(token)
    return drafted


@pytest.mark.parametrize("case", sorted(CASES))
def test_steps_match_transformers(case, files, hf):
    tname, hf_drafter, _, centroids = CASES[case]
    text, asst, cent = files(tname)
    target, drafter_ref = hf(tname), hf(hf_drafter)
    W = target.config.text_config.sliding_window
    tm = core.TextModel(text)
    am = core.AssistantModel(asst, cent if centroids else None)
    assert am.has_centroid_head == centroids == (drafter_ref.masked_embedding is not None)
    d = core.Drafter(am, tm)
    ctx = core.Context(tm, n_ctx=256, k_type="f32", v_type="f32")
    oracle = Oracle(target, drafter_ref)
    rng = np.random.default_rng(len(case))
    prompt = rng.integers(300, 2200, size=2 * W + 7).astype(np.int32)
    prompt[0] = 2
    errs = []

    # round 1, after the prefill (sliding K/V: the whole prompt)
    tok, h = oracle.forward(prompt)
    ctx.eval(prompt)
    drafted = run_round(oracle, d, ctx, tok, h, 4, errs)

    # the window transformers applies is exactly the last W + 1 entries: the oracle with its
    # sliding K/V cut to W entries differs, cut to W + 2 it is the same
    pos = ctx.n_past
    ours, _ = d.step(ctx, tok, pos, ctx.last_hidden[-1])
    for keep, same in ((W, False), (W + 2, True)):
        cut = {k: (v[0][:, :, -keep:], v[1][:, :, -keep:]) if k == "sliding_attention" else v
               for k, v in oracle.shared.items()}
        ref, _ = oracle.step(tok, h, shared=cut)
        assert (rel_l2(ours, ref) < TOL) == same, (keep, rel_l2(ours, ref))

    # round 2, after a verification forward that accepted every draft (sliding K/V: W - 1 cached + 5 new)
    accepted = [tok] + drafted
    tok, h = oracle.forward(accepted)
    ctx.eval(np.array(accepted, np.int32))
    run_round(oracle, d, ctx, tok, h, 3, errs)

    worst = np.max(errs, axis=0)
    assert worst[0] < TOL and worst[1] < TOL, (case, worst)


def test_first_round_of_generate(files, hf):
    """transformers' own assisted generate(): the first draft round (after the prefill) has the
    drafts and logits ours has for the same prompt."""
    import torch

    text, asst, cent = files("default")
    target, drafter_ref = hf("default"), hf("assistant_default")
    calls = []

    class FirstRoundDone(Exception):
        pass

    def hook(mod, args, kwargs, out):
        calls.append((int(kwargs["position_ids"][0, 0]), out.logits[0, 0].numpy().copy()))
        if len(calls) == 3:   # the first round is all this test needs: stop generate() there
            raise FirstRoundDone

    handle = drafter_ref.register_forward_hook(hook, with_kwargs=True)
    old = drafter_ref.generation_config.num_assistant_tokens
    drafter_ref.generation_config.num_assistant_tokens = 3
    prompt = np.random.default_rng(7).integers(300, 2200, size=37).astype(np.int32)
    prompt[0] = 2
    try:
        with torch.no_grad(), pytest.raises(FirstRoundDone):
            target.generate(torch.tensor(prompt[None].astype(np.int64)), assistant_model=drafter_ref,
                            do_sample=False, max_new_tokens=5, eos_token_id=None, pad_token_id=0)
    finally:
        handle.remove()
        drafter_ref.generation_config.num_assistant_tokens = old
    assert [c[0] for c in calls] == [len(prompt)] * 3   # every step at the position of the round's token
    first = calls
    tm = core.TextModel(text)
    d = core.Drafter(core.AssistantModel(asst, cent), tm)
    ctx = core.Context(tm, n_ctx=128, k_type="f32", v_type="f32")
    tok = int(np.argmax(ctx.eval(prompt)[0]))
    h = ctx.last_hidden[-1]
    for _, ref in first:
        logits, h = d.step(ctx, tok, len(prompt), h)
        assert rel_l2(logits, ref) < TOL
        tok = int(np.argmax(logits))
        assert tok == int(np.argmax(ref))


def test_centroid_head_is_the_full_head_on_its_clusters(files):
    """Ordered-embedding head: the top-k clusters' tokens carry the full head's logits, every
    other token (min - 1); the chosen tokens are exactly top_k whole clusters."""
    text, asst, cent = files("default")
    tm = core.TextModel(text)
    full, masked = core.AssistantModel(asst), core.AssistantModel(asst, cent)
    hp = masked.hparams
    ctx = core.Context(tm, n_ctx=64, k_type="f32", v_type="f32")
    ctx.eval(np.arange(1000, 1030, dtype=np.int32))
    h = ctx.last_hidden[-1]
    lf, hf_ = core.Drafter(full, tm).step(ctx, 1500, 30, h)
    lm, hm = core.Drafter(masked, tm).step(ctx, 1500, 30, h)
    np.testing.assert_array_equal(hf_, hm)
    k = hp["n_vocab"] // hp["num_centroids"]
    sel = lm > lm.min()
    assert sel.sum() == hp["centroid_top_k"] * k
    np.testing.assert_allclose(lm[sel], lf[sel], rtol=0, atol=1e-5 * np.abs(lf).max())
    assert lm.min() == np.float32(lm[sel].min() - 1.0)


def test_our_file_and_llama_cpp_file_agree(files, hf_ckpt, tmp_path):
    """llama.cpp's converter output of the same drafter gives the same steps as ours, bit for
    bit (same F32 tensors, same keys but our unigemma.* ones). CI has no llama.cpp tree (and the
    file is 40 MB, too large to commit): runs where UNIGEMMA_LLAMA_CPP_DIR names a llama.cpp
    source tree (its convert_hf_to_gguf.py and gguf-py)."""
    root = os.environ.get("UNIGEMMA_LLAMA_CPP_DIR")
    if not root or not (Path(root) / "convert_hf_to_gguf.py").is_file():
        pytest.skip("llama.cpp converter oracle: set UNIGEMMA_LLAMA_CPP_DIR to a llama.cpp source tree "
                    "(holding convert_hf_to_gguf.py and gguf-py)")
    text, asst, _ = files("alt_layout")
    out = tmp_path / "lcp-assistant.gguf"
    env = dict(os.environ, PYTHONPATH=str(Path(root) / "gguf-py"))
    subprocess.run([sys.executable, str(Path(root) / "convert_hf_to_gguf.py"), str(hf_ckpt("assistant_alt_layout")),
                    "--outtype", "f32", "--outfile", str(out)], check=True, env=env, capture_output=True)
    tm = core.TextModel(text)
    ctx = core.Context(tm, n_ctx=64, k_type="f32", v_type="f32")
    ctx.eval(np.arange(1000, 1040, dtype=np.int32))
    ours, theirs = core.Drafter(core.AssistantModel(asst), tm), core.Drafter(core.AssistantModel(out), tm)
    assert not core.AssistantModel(out).hparams["ordered_embeddings_declared"]
    h1 = h2 = ctx.last_hidden[-1]
    for tok in (1500, 1600, 1700):
        l1, h1 = ours.step(ctx, tok, 40, h1)
        l2, h2 = theirs.step(ctx, tok, 40, h2)
        np.testing.assert_array_equal(l1, l2)
        np.testing.assert_array_equal(h1, h2)


# ------------------------------------------------------------------------------------------
# Small synthetic files (tests/gguf_samples.py): a 3-layer gemma4 target (V 24, H 32, window 8)
# and a 2-layer drafter [sliding, full] for it, with its centroid side file.
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    d = tmp_path_factory.mktemp("asst-sample")
    gs.write_gemma4(d / "target.gguf")
    gs.write_assistant(d / "assistant.gguf")
    gs.write_centroids(d / "centroids.gguf")
    return d


def sample_ctx(sample, n=20, **kw):
    tm = core.TextModel(str(sample / "target.gguf"))
    ctx = core.Context(tm, k_type="f32", v_type="f32", **{"n_ctx": 128, **kw})
    ctx.eval((np.arange(n) * 7 % gs.V).astype(np.int32))
    return tm, ctx


def test_sample_steps(sample):
    """Source layers, thread-count independence, precision option, h chaining, and a query
    before the window is full (pos < W + 1: every earlier position is visible)."""
    tm, ctx = sample_ctx(sample)
    am = core.AssistantModel(sample / "assistant.gguf", sample / "centroids.gguf")
    assert am.has_centroid_head and am.hparams["num_centroids"] == gs.NC and am.hparams["centroid_top_k"] == gs.TOPK
    assert am.n_embd == gs.HA and am.n_embd_out == gs.H and am.n_vocab == gs.V
    d1, d2 = core.Drafter(am, tm, n_threads=1), core.Drafter(am, tm, n_threads=2)
    assert d1.source_layers == [1, 2]      # last KV-owning sliding / full target layer
    h = ctx.last_hidden[-1]
    for pos in (20, 5, 1):
        a, b = d1.step(ctx, 3, pos, h), d2.step(ctx, 3, pos, h)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert np.isfinite(a[0]).all() and a[1].shape == (gs.H,) and a[0].shape == (gs.V,)
    l1, h1 = d1.step(ctx, 3, 20, h)
    l2, h2 = d1.step(ctx, 5, 20, h1.astype(np.float64))   # chained, any float dtype
    assert not np.array_equal(l1, l2)
    q16 = core.Drafter(am, tm, act_precision="q16").step(ctx, 3, 20, h)
    np.testing.assert_array_equal(q16[0], l1)   # F32 weights: no activation quantization either way
    with pytest.raises(unigemma.InputError, match="act_precision"):
        core.Drafter(am, tm, act_precision="q4")


def test_centroid_tensors_inside_the_drafter_file(sample, tmp_path):
    """A drafter file that holds the centroid tensors itself (gguf-py's names; top-k from
    unigemma.assistant.centroid_top_k) gives the head the side file gives."""
    c = gs.write_centroids(tmp_path / "c.gguf")
    gs.write_assistant(tmp_path / "a.gguf", tensor_overrides=c,
                       key_overrides={"unigemma.assistant.centroid_top_k": ("u32", gs.TOPK),
                                      "unigemma.assistant.num_centroids": ("u32", gs.NC)})
    inner = core.AssistantModel(tmp_path / "a.gguf")
    assert inner.has_centroid_head and inner.hparams["ordered_embeddings_declared"]
    assert inner.hparams["centroid_top_k"] == gs.TOPK
    tm, ctx = sample_ctx(sample)
    h = ctx.last_hidden[-1]
    a = core.Drafter(inner, tm).step(ctx, 3, 20, h)
    b = core.Drafter(core.AssistantModel(sample / "assistant.gguf", sample / "centroids.gguf"), tm).step(ctx, 3, 20, h)
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(unigemma.ModelError, match="has 4 centroids, the drafter file declares 8"):
        gs.write_assistant(tmp_path / "a8.gguf", key_overrides={"unigemma.assistant.num_centroids": ("u32", 8)})
        core.AssistantModel(tmp_path / "a8.gguf", sample / "centroids.gguf")


def test_step_reads_only_keys_before_pos(sample):
    """Entries at or after pos (a rejected draft's K/V still in the cache) do not change a step."""
    tm, ctx = sample_ctx(sample, n=20)
    d = core.Drafter(core.AssistantModel(sample / "assistant.gguf"), tm)
    h = np.linspace(-1, 1, gs.H).astype(np.float32)
    ref = d.step(ctx, 3, 16, h)
    ctx.truncate(16)
    ctx.eval(np.array([9, 1, 2, 3, 4, 5, 6], np.int32))
    got = d.step(ctx, 3, 16, h)
    np.testing.assert_array_equal(ref[0], got[0])
    np.testing.assert_array_equal(ref[1], got[1])


def test_bad_step_arguments(sample):
    tm, ctx = sample_ctx(sample)
    d = core.Drafter(core.AssistantModel(sample / "assistant.gguf"), tm)
    h = ctx.last_hidden[-1]
    for kw, msg in [(dict(pos=21), r"pos 21 must be in \[1, n_past = 20\]"), (dict(pos=0), "pos 0 must be"),
                    (dict(pos=-3), "pos -3"), (dict(token=gs.V), "token id 24 is outside"),
                    (dict(token=-1), "token id -1"), (dict(h=h[:-1]), r"shape \(32,\).*got \(31,\)"),
                    (dict(h=h[None]), r"got \(1, 32\)"), (dict(h=np.arange(gs.H)), "floating point"),
                    (dict(h="x"), "floating point")]:
        args = dict(ctx=ctx, token=3, pos=20, h=h)
        args.update(kw)
        with pytest.raises(unigemma.InputError, match=r"^\[drafter\] .*" + msg):
            d.step(**args)
    other = core.TextModel(str(sample / "target.gguf"))   # same file, another model object
    octx = core.Context(other, n_ctx=32)
    octx.eval(np.arange(5, dtype=np.int32))
    with pytest.raises(unigemma.InputError, match="different TextModel"):
        d.step(octx, 3, 5, h)
    with pytest.raises(unigemma.InputError, match="n_threads"):
        core.Drafter(core.AssistantModel(sample / "assistant.gguf"), tm, n_threads=-1)


def test_cache_rolled_back_past_the_ring(sample):
    """The drafter needs W + 1 positions before pos on sliding layers, the target's own window
    W - 1: after a rollback of 66 positions the ring (W + n_ubatch + 64 slots) still serves the
    target but no longer the drafter: an InputError, not a wrong answer."""
    tm, ctx = sample_ctx(sample, n=90, n_ubatch=1)
    assert ctx.truncate(90 - 66)
    d = core.Drafter(core.AssistantModel(sample / "assistant.gguf"), tm)
    with pytest.raises(unigemma.InputError, match="no longer holds position 15 .*drafter layer 0"):
        d.step(ctx, 3, 24, ctx.last_hidden[-1])


U32, F32, S = gs.gguf.GGUFValueType.UINT32, gs.gguf.GGUFValueType.FLOAT32, gs.gguf.GGUFValueType.STRING
A = "gemma4-assistant."
BAD_ASSISTANT = {  # case -> (write_assistant kwargs, exception, message)
    "missing pre_projection": (dict(drop_tensors=["nextn.pre_projection.weight"]), unigemma.GGUFError,
                               "missing required tensor 'nextn.pre_projection.weight'"),
    "missing layer scale": (dict(drop_tensors=["blk.1.layer_output_scale.weight"]), unigemma.GGUFError,
                            "missing required tensor 'blk.1.layer_output_scale.weight'"),
    "missing q": (dict(drop_tensors=["blk.0.attn_q.weight"]), unigemma.GGUFError,
                  "missing required tensor 'blk.0.attn_q.weight'"),
    "missing embedding_length_out": (dict(drop_keys=[A + "embedding_length_out"]), unigemma.GGUFError,
                                     "embedding_length_out"),
    "post_projection shape": (dict(tensor_overrides={"nextn.post_projection.weight": np.zeros((30, gs.HA), np.float32)}),
                              unigemma.GGUFError, "tensor 'nextn.post_projection.weight': shape [16, 30] disagrees"),
    "norm dtype": (dict(tensor_overrides={"blk.0.ffn_norm.weight": np.ones(gs.HA, np.float16)}), unigemma.ModelError,
                   "tensor blk.0.ffn_norm.weight must be F32"),
    "bad eps": (dict(key_overrides={A + "attention.layer_norm_rms_epsilon": ("f32", 0.0)}), unigemma.ModelError,
                "layer_norm_rms_epsilon must be in (0, 1)"),
}


@pytest.mark.parametrize("case", sorted(BAD_ASSISTANT))
def test_malformed_assistant(case, tmp_path):
    kw, exc, msg = BAD_ASSISTANT[case]
    gs.write_assistant(tmp_path / "a.gguf", **kw)
    with pytest.raises(exc) as e:
        core.AssistantModel(tmp_path / "a.gguf")
    assert str(e.value).startswith("[assistant] ") and msg in str(e.value), str(e.value)


BAD_CENTROIDS = {
    "hidden": (dict(key_overrides={"gemma4-assistant-centroids.embedding_length": ("u32", 8)},
                    tensor_overrides={"masked_embd_centroids.weight": np.zeros((gs.NC, 8), np.float32)}),
               unigemma.ModelError, "is for hidden size 8 / vocabulary 24, this drafter has 16 / 24"),
    "ordering range": (dict(tensor_overrides={"masked_embd_ordering": np.arange(gs.V, dtype=np.int32) + 1}),
                       unigemma.ModelError, "masked_embd_ordering[23] = 24 is outside the vocabulary"),
    "ordering type": (dict(tensor_overrides={"masked_embd_ordering": np.arange(gs.V, dtype=np.float32)}),
                      unigemma.GGUFError, "'masked_embd_ordering': must be I32"),
    "top_k": (dict(key_overrides={"gemma4-assistant-centroids.top_k": ("u32", gs.NC + 1)}),
              unigemma.GGUFError, "top_k"),
    "not dividing": (dict(key_overrides={"gemma4-assistant-centroids.num_centroids": ("u32", 5)},
                          tensor_overrides={"masked_embd_centroids.weight": np.zeros((5, gs.HA), np.float32)}),
                     unigemma.GGUFError, "5 centroids do not divide the vocabulary of 24"),
}


@pytest.mark.parametrize("case", sorted(BAD_CENTROIDS))
def test_malformed_centroid_file(case, sample, tmp_path):
    kw, exc, msg = BAD_CENTROIDS[case]
    gs.write_centroids(tmp_path / "c.gguf", **kw)
    with pytest.raises(exc) as e:
        core.AssistantModel(sample / "assistant.gguf", tmp_path / "c.gguf")
    assert str(e.value).startswith("[assistant] ") and msg in str(e.value), str(e.value)


def test_wrong_kind_of_file(sample, tmp_path):
    with pytest.raises(unigemma.ModelError, match=r"^\[assistant\] .* is a 'gemma4' model, not an MTP drafter"):
        core.AssistantModel(sample / "target.gguf")
    with pytest.raises(unigemma.ModelError, match=r"^\[assistant\] .*gemma4-assistant-centroids' model, not an MTP"):
        core.AssistantModel(sample / "centroids.gguf")
    with pytest.raises(unigemma.ModelError, match=r"^\[assistant\] centroid file .* is a 'gemma4-assistant' file"):
        core.AssistantModel(sample / "assistant.gguf", sample / "assistant.gguf")
    with pytest.raises(unigemma.GGUFError, match=r"^\[assistant\] .*does-not-exist.gguf"):
        core.AssistantModel(tmp_path / "does-not-exist.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + bytes(7))
    with pytest.raises(unigemma.GGUFError, match=r"^\[assistant\] "):
        core.AssistantModel(junk)
    with pytest.raises(unigemma.GGUFError, match=r"^\[assistant\] "):
        core.AssistantModel(sample / "assistant.gguf", junk)
    # a target passed where the drafter's target goes must be a TextModel
    with pytest.raises(TypeError):
        core.Drafter(core.AssistantModel(sample / "assistant.gguf"), core.AssistantModel(sample / "assistant.gguf"))


MISMATCH = {  # drafter key / tensor changes that make it unfit for the sample target
    "hidden": (dict(key_overrides={A + "embedding_length_out": ("u32", 24)},
                    tensor_overrides={"nextn.pre_projection.weight": np.zeros((gs.HA, 48), np.float32),
                                      "nextn.post_projection.weight": np.zeros((24, gs.HA), np.float32)}),
               "reads target hidden states of 24 (embedding_length_out), the target's hidden size is 32"),
    "head_dim": (dict(key_overrides={A + "attention.key_length": ("u32", 16), A + "attention.value_length": ("u32", 16)},
                      tensor_overrides={"blk.1.attn_q.weight": np.zeros((2 * 16, gs.HA), np.float32),
                                        "blk.1.attn_q_norm.weight": np.ones(16, np.float32),
                                        "blk.1.attn_output.weight": np.zeros((gs.HA, 2 * 16), np.float32),
                                        "rope_freqs.weight": np.ones(8, np.float32)}),
                 "drafter layer 1 (full) has head_dim 16, target layer 2, whose K/V it reads, has 32"),
    "kv heads": (dict(key_overrides={A + "attention.head_count_kv": ("u32", 2)}),
                 "drafter layer 0 (sliding) declares 2 KV heads, target layer 1, whose K/V it reads, has 1"),
    "vocab": (dict(key_overrides={"tokenizer.ggml.tokens": ("strarr", [f"t{i}" for i in range(20)])},
                   tensor_overrides={"token_embd.weight": np.zeros((20, gs.HA), np.float32)}),
              "vocabulary has 20 tokens, the target's 24"),
    "window": (dict(key_overrides={A + "attention.sliding_window": ("u32", 9)}),
               "sliding_window 9 exceeds the target's 8"),
    "layer type": (dict(key_overrides={A + "attention.sliding_window_pattern": ("boolarr", [True, True])},
                        tensor_overrides={"blk.1.attn_q.weight": np.zeros((2 * 16, gs.HA), np.float32),
                                          "blk.1.attn_q_norm.weight": np.ones(16, np.float32),
                                          "blk.1.attn_output.weight": np.zeros((gs.HA, 2 * 16), np.float32)}),
                   None),   # fits: both layers read target layer 1
}


@pytest.mark.parametrize("case", sorted(MISMATCH))
def test_drafter_target_mismatch(case, sample, tmp_path):
    kw, msg = MISMATCH[case]
    gs.write_assistant(tmp_path / "a.gguf", **kw)
    am = core.AssistantModel(tmp_path / "a.gguf")
    tm = core.TextModel(str(sample / "target.gguf"))
    if msg is None:
        assert core.Drafter(am, tm).source_layers == [1, 1]
        return
    with pytest.raises(unigemma.ModelError) as e:
        core.Drafter(am, tm)
    assert str(e.value).startswith("[drafter] ") and msg in str(e.value), str(e.value)


def test_gemma3_target_is_refused(sample):
    gemma3 = Path(unigemma.default_model_path())
    with pytest.raises(unigemma.ModelError, match="'gemma3' model; the drafter needs a gemma4 target"):
        core.Drafter(core.AssistantModel(sample / "assistant.gguf"), core.TextModel(str(gemma3)))
