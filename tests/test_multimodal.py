"""Images, audio and video in the prompt, end to end, against transformers (gemma4_unified).

Our side: `unigemma.Model(gguf, mmproj=...)` from a media *source* (arrays here, files in the
CLI test): our preprocessing -> the C++ projector -> soft-token rows in the text stream, image
blocks bidirectional on sliding layers. Oracle: `Gemma4UnifiedForConditionalGeneration` fed the
same preprocessed patches / frames (`get_image_features`, `get_audio_features`), the soft
tokens scattered into `inputs_embeds`, and the attention masks the reference documents for
Gemma 4 (`create_masks_for_vision_model`: bidirectional within an image on sliding layers only;
see ../shared/reference/README.md, decision 1). Preprocessing parity with the transformers
processors has its own tests (test_preprocess_*.py).

The image blocks (50-70 soft tokens) are longer than the sliding windows (16 / 8), so the window
and the block overlay both matter.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import unigemma
from unigemma.convert import convert
from unigemma.preprocess.audio import audio_frames
from unigemma.preprocess.errors import MediaError
from unigemma.preprocess.image import load_image, preprocess_image

from synthetic_media import media_inputs

IMG, AUD, BOI, EOI, BOA, EOA = 258880, 258881, 255999, 258882, 256000, 258883
FIXTURES = Path(__file__).resolve().parent / "fixtures"
LLAMA_CPP_MMPROJ = FIXTURES / "tiny-default-llamacpp-mmproj-f32.gguf"


@pytest.fixture(scope="module")
def files(hf_ckpt, tmp_path_factory):
    """files(name) -> (text gguf, our mmproj gguf), F32."""
    root = tmp_path_factory.mktemp("mm")
    cache = {}

    def get(name: str):
        if name not in cache:
            res = convert(hf_ckpt(name), outtype="f32", out_prefix=root / name, progress=False)
            cache[name] = (str(res.text), str(res.mmproj))
        return cache[name]

    return get


def hf_reference(hf, ids: np.ndarray, images, audio, budget: int) -> np.ndarray:
    """All-position logits of the oracle for `ids` (placeholders already expanded)."""
    import torch
    from transformers.models.gemma4_unified.modeling_gemma4_unified import (
        create_masks_for_vision_model, get_block_sequence_ids_for_mask)

    with torch.no_grad():
        feats = []
        for im in images:
            p = preprocess_image(load_image(im), budget)
            out = hf.model.get_image_features(torch.from_numpy(p.pixel_values)[None],
                                              torch.from_numpy(p.positions.astype(np.int64))[None])
            feats.append(out.pooler_output[0])
        fr = torch.from_numpy(audio_frames(audio))[None]
        af = hf.model.get_audio_features(fr, torch.ones(fr.shape[:2], dtype=torch.bool)).pooler_output[0]
        t = torch.from_numpy(ids.astype(np.int64))[None]
        emb = hf.model.get_input_embeddings()(torch.where((t == IMG) | (t == AUD), 0, t))
        emb[t == IMG] = torch.cat(feats, 0)
        emb[t == AUD] = af
        types = torch.zeros_like(t)
        types[t == IMG] = 1
        types[t == AUD] = 3
        pos = torch.arange(t.shape[1])[None]
        masks = create_masks_for_vision_model(hf.config.get_text_config(), emb, None, None, pos,
                                              get_block_sequence_ids_for_mask(types, emb.device))
        return hf(inputs_embeds=emb, attention_mask=masks, position_ids=pos).logits[0].float().numpy()


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


PROMPT = "<|image|>Compare this with<|image|> and listen:<|audio|> What is"


@pytest.mark.parametrize("name", ["default", "alt_layout"])
def test_logits_and_greedy_match_transformers(name, files, hf_model):
    text, mmproj = files(name)
    img1, img2, audio = media_inputs(3)
    m = unigemma.Model(text, mmproj=mmproj, image_tokens=70, n_ctx=512, kv_type="f32", n_ubatch=64)
    media = [("image", img1), ("image", img2), ("audio", audio)]
    ours = m.logits(PROMPT, media=media)
    ids = np.asarray(m._text_prompt(PROMPT, media, add_bos=True).ids)
    # layout: <bos> <|image> N1 x <|image|> <image|> ... <|audio> 15 x <|audio|> <audio|> ...
    n_img = [preprocess_image(load_image(im), 70).n_tokens for im in (img1, img2)]
    assert 50 <= min(n_img) and max(n_img) <= 70
    assert (ids == IMG).sum() == sum(n_img) and (ids == AUD).sum() == 15
    assert (ids == BOI).sum() == 2 and (ids == EOI).sum() == 2 and (ids == BOA).sum() == 1 and (ids == EOA).sum() == 1
    hf = hf_model(name)
    ref = hf_reference(hf, ids, [img1, img2], audio, 70)
    err = rel_l2(ours, ref)
    print(f"[{name}] {len(ids)} positions, logits rel L2 {err:.2e}")
    assert err < 1e-4
    # greedy continuation: ours through generate (prefill + one-token decode steps) vs the
    # oracle's full forward per step
    r = m.generate(PROMPT, media=media, max_tokens=8, stop_tokens=[])
    seq = list(ids)
    for _ in range(8):
        seq.append(int(hf_reference(hf, np.asarray(seq), [img1, img2], audio, 70)[-1].argmax()))
    assert r.tokens == seq[len(ids):]


def test_llama_cpp_projector_gives_the_same_result(files, hf_model):
    """llama.cpp's converter output (committed fixture of the `default` checkpoint) as projector."""
    text, mmproj = files("default")
    img1, img2, audio = media_inputs(5)
    media = [("image", img1), ("image", img2), ("audio", audio)]
    ours = unigemma.Model(text, mmproj=mmproj, image_tokens=70, n_ctx=512, kv_type="f32")
    theirs = unigemma.Model(text, mmproj=str(LLAMA_CPP_MMPROJ), image_tokens=70, n_ctx=512, kv_type="f32")
    for a, b in ((ours.embed_image(img1), theirs.embed_image(img1)), (ours.embed_audio(audio), theirs.embed_audio(audio))):
        assert a.shape == b.shape and rel_l2(b, a) < 1e-5
    lo, lt = ours.logits(PROMPT, media=media), theirs.logits(PROMPT, media=media)
    ids = np.asarray(ours._text_prompt(PROMPT, media, add_bos=True).ids)
    ref = hf_reference(hf_model("default"), ids, [img1, img2], audio, 70)
    assert rel_l2(lt, ref) < 1e-4 and rel_l2(lo, ref) < 1e-4


def test_embed_outputs_shapes(files):
    text, mmproj = files("default")
    img1, _, audio = media_inputs(1)
    m = unigemma.Model(text, mmproj=mmproj)
    e = m.embed_image(img1)           # 300x420 at the default budget 280
    p = preprocess_image(load_image(img1), 280)
    assert e.shape == (p.n_tokens, 64) and e.dtype == np.float32 and 250 <= p.n_tokens <= 280
    assert m.embed_image(img1, max_soft_tokens=70).shape[0] <= 70
    assert m.embed_audio(audio).shape == (-(-9000 // 640), 64)
    assert m.embed_audio(np.zeros(1, np.float32)).shape == (1, 64)   # shorter than one frame


def test_chat_turns_reuse_the_cache_through_identical_media(files):
    text, mmproj = files("default")
    img1, img2, audio = media_inputs(7)
    m = unigemma.Model(text, mmproj=mmproj, image_tokens=70, n_ctx=1024, kv_type="f32")
    msgs = [{"role": "user", "content": [{"type": "image", "image": img1}, {"type": "text", "text": "What is it?"}]}]
    r1 = m.chat(msgs, max_tokens=4)
    first = r1.stats["prompt_tokens"]
    msgs += [r1.message, {"role": "user", "content": [{"type": "audio", "audio": audio},
                                                      {"type": "text", "text": "And this?"}]}]
    r2 = m.chat(msgs, max_tokens=4)
    # the first turn up to its generation prompt (re-rendered differently) came from the cache
    n_img = preprocess_image(load_image(img1), 70).n_tokens
    assert n_img + 8 < r2.stats["reused_tokens"] < first
    # the same conversation with a different first image: no reuse through the image block,
    # and the result equals a fresh model's
    msgs2 = [dict(msgs[0], content=[{"type": "image", "image": img2}, {"type": "text", "text": "What is it?"}])] + msgs[1:]
    r3 = m.chat(msgs2, max_tokens=4)
    assert r3.stats["reused_tokens"] <= 6   # <bos><|turn>user\n<|image> at most
    fresh = unigemma.Model(text, mmproj=mmproj, image_tokens=70, n_ctx=1024, kv_type="f32")
    assert fresh.chat(msgs2, max_tokens=4).tokens == r3.tokens


def test_media_errors(files, tmp_path):
    text, mmproj = files("default")
    img1, _, audio = media_inputs(2)
    plain = unigemma.Model(text)
    with pytest.raises(MediaError, match="mmproj"):
        plain.chat([{"role": "user", "content": [{"type": "image", "image": img1}]}], max_tokens=1)
    with pytest.raises(MediaError, match="mmproj"):
        plain.embed_audio(audio)
    m = unigemma.Model(text, mmproj=mmproj, image_tokens=70)
    with pytest.raises(MediaError, match="placeholder"):
        m.generate("<|image|><|image|> two?", media=[("image", img1)], max_tokens=1)
    with pytest.raises(MediaError, match="placeholder"):
        m.generate("<|audio|>", media=[("audio", audio), ("image", img1)], max_tokens=1)
    with pytest.raises(MediaError, match="kind"):
        m.generate("hi", media=[("picture", img1)], max_tokens=1)
    with pytest.raises(MediaError, match="pair"):
        m.generate("hi", media=[("image",)], max_tokens=1)
    with pytest.raises(MediaError, match="load_image"):
        m.chat([{"role": "user", "content": [{"type": "image", "image": 123}]}], max_tokens=1)
    with pytest.raises(MediaError, match="URL"):
        m.chat([{"role": "user", "content": [{"type": "image", "url": "https://example.com/a.jpg"}]}], max_tokens=1)
    with pytest.raises(MediaError):
        m.embed_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt ")   # truncated header
    with pytest.raises(MediaError):
        m.chat([{"role": "user", "content": [{"type": "audio", "audio": str(bad)}]}], max_tokens=1)
    # the model stays usable after the errors
    assert m.generate("<|image|>ok", media=[("image", img1)], max_tokens=2).tokens
    # projector of another model (H=48 vs 64)
    _, other = files("alt_layout")
    with pytest.raises(unigemma.ModelError, match="hidden size"):
        unigemma.Model(text, mmproj=other)
    # a text GGUF is not a projector
    with pytest.raises(unigemma.UnigemmaError):
        unigemma.Model(text, mmproj=text)
    with pytest.raises(unigemma.InputError, match="not found"):
        unigemma.Model(text, mmproj=tmp_path / "nope.gguf")


def test_gemma3_refuses_a_projector(files):
    _, mmproj = files("default")
    with pytest.raises(unigemma.ModelError, match="Gemma 4"):
        unigemma.Model(unigemma.default_model_path(), mmproj=mmproj)


def test_cli_run_with_image_and_audio(files, tmp_path):
    from PIL import Image
    import soundfile as sf

    text, mmproj = files("default")
    img1, _, audio = media_inputs(4)
    Image.fromarray(img1).save(tmp_path / "a.png")
    sf.write(tmp_path / "b.wav", audio, 16000)
    cmd = [sys.executable, "-m", "unigemma", "run", text, "--mmproj", mmproj, "--image", str(tmp_path / "a.png"),
           "--audio", str(tmp_path / "b.wav"), "-p", "Describe.", "-n", "3", "--image-tokens", "70"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "prompt eval" in r.stderr
    m = unigemma.Model(text, mmproj=mmproj, image_tokens=70)
    want = m.chat([{"role": "user", "content": [{"type": "image", "image": str(tmp_path / "a.png")},
                                                {"type": "audio", "audio": str(tmp_path / "b.wav")},
                                                {"type": "text", "text": "Describe."}]}], max_tokens=3)
    assert r.stdout.rstrip("\n") == want.content
    r = subprocess.run([sys.executable, "-m", "unigemma", "run", text, "--image", str(tmp_path / "a.png")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--mmproj" in r.stderr


def test_video_layout_and_logits_match_transformers(files, hf_model):
    """A video in a chat turn: per sampled frame "MM:SS <|image>" + N x <|video|> + "<image|>"
    (frames joined by a space, the timestamps tokenized with the surrounding text), each frame
    its own bidirectional block; logits against the oracle with video soft tokens (type 2)."""
    import torch
    from transformers.models.gemma4_unified.modeling_gemma4_unified import (
        create_masks_for_vision_model, get_block_sequence_ids_for_mask)
    from unigemma.preprocess.video import load_video, preprocess_video, video_prompt_timestamps

    VID = 258884
    text, mmproj = files("default")
    clip = str(FIXTURES / "media" / "clip_24fps_3s.mp4")
    m = unigemma.Model(text, mmproj=mmproj, video_tokens=70, video_frames=4, n_ctx=1024, kv_type="f32")
    msgs = [{"role": "user", "content": [{"type": "video", "video": clip}, {"type": "text", "text": "What happens?"}]}]
    from unigemma.chat import render_gemma4

    rendered = render_gemma4(msgs, add_generation_prompt=True)
    mp = m._media_prompt(rendered, [("video", clip)], add_bos=True)
    ids = np.asarray(mp.ids)
    v = load_video(clip, num_frames=4)
    frames = preprocess_video(v, 70)
    stamps = video_prompt_timestamps(v.timestamps)
    assert len(frames) == 4 and (ids == VID).sum() == sum(f.n_tokens for f in frames)
    assert (ids == BOI).sum() == 4 and (ids == EOI).sum() == 4
    expect = rendered.replace("<|video|>", " ".join(f"{t} <|image>{'<|video|>' * f.n_tokens}<image|>"
                                                    for t, f in zip(stamps, frames)))
    assert mp.ids == m.tokenize(expect, add_bos=True, special=True)
    ctx_logits = m.new_context(len(ids)).eval(np.asarray(ids, np.int32), all_logits=True,
                                               embeddings=mp.slice_inputs(0, 64)[0], kinds=mp.kinds)
    hf = hf_model("default")
    with torch.no_grad():
        pv = torch.from_numpy(np.stack([f.pixel_values for f in frames]))
        pos = torch.from_numpy(np.stack([f.positions for f in frames]).astype(np.int64))
        feats = hf.model.get_video_features(pv, pos, num_frames_per_video=torch.tensor([4])).pooler_output[0]
        t = torch.from_numpy(ids.astype(np.int64))[None]
        emb = hf.model.get_input_embeddings()(torch.where(t == VID, 0, t))
        emb[t == VID] = feats
        types = (t == VID).long() * 2
        p = torch.arange(t.shape[1])[None]
        masks = create_masks_for_vision_model(hf.config.get_text_config(), emb, None, None, p,
                                              get_block_sequence_ids_for_mask(types, emb.device))
        ref = hf(inputs_embeds=emb, attention_mask=masks, position_ids=p).logits[0].float().numpy()
    assert rel_l2(ctx_logits, ref) < 1e-4
    assert m.chat(msgs, max_tokens=3).stats["prompt_tokens"] == len(ids)


def test_cli_chat_attaches_media(files, tmp_path):
    from PIL import Image

    text, mmproj = files("default")
    img1, _, _ = media_inputs(6)
    Image.fromarray(img1).save(tmp_path / "a.png")
    stdin = f"/image {tmp_path / 'a.png'}\nWhat is it?\n/image {tmp_path / 'missing.png'}\n/exit\n"
    r = subprocess.run([sys.executable, "-m", "unigemma", "chat", text, "--mmproj", mmproj, "-n", "3",
                        "--image-tokens", "70"], input=stdin, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "image attached" in r.stderr and "no such file" in r.stderr
    assert r.stderr.count("prompt eval") == 1
    m = unigemma.Model(text, mmproj=mmproj, image_tokens=70)
    want = m.chat([{"role": "user", "content": [{"type": "image", "image": str(tmp_path / "a.png")},
                                                {"type": "text", "text": "What is it?"}]}], max_tokens=3)
    assert r.stdout.splitlines()[0] == want.content
    r = subprocess.run([sys.executable, "-m", "unigemma", "chat", text, "-n", "2"], input="/audio x.wav\n/exit\n",
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "--mmproj" in r.stderr
