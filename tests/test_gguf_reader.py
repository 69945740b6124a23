"""GGUF reader: valid files of every value type read back exactly (against the `gguf`
package's writer and reader), and every class of malformed file raises GGUFError whose
message names the offending key or tensor."""
from __future__ import annotations

import struct

import gguf
import numpy as np
import pytest

import unigemma
from unigemma import GGUFError

from gguf_bytes import (T_ARR, T_BOOL, T_F32, T_F64, T_I8, T_I16, T_I32, T_I64, T_STR, T_U8, T_U16, T_U32,
                        T_U64, RawGGUF, Tensor)
from gguf_samples import write_gemma4


def open_raw(tmp_path, raw: RawGGUF | bytes, validate_model=False, name="t.gguf"):
    p = tmp_path / name
    p.write_bytes(raw if isinstance(raw, bytes) else raw.build())
    return unigemma.open_gguf(p, validate_model=validate_model)


def expect_error(tmp_path, raw, *fragments, validate_model=False):
    with pytest.raises(GGUFError) as ei:
        open_raw(tmp_path, raw, validate_model)
    msg = str(ei.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


# ---------------------------------------------------------------- valid files


@pytest.mark.parametrize("version", [2, 3])
def test_every_value_type_round_trips(tmp_path, version):
    r = RawGGUF(version=version)
    r.add("general.architecture", T_STR, "custom")
    vals = {"u8": (T_U8, 255), "i8": (T_I8, -128), "u16": (T_U16, 65535), "i16": (T_I16, -32768),
            "u32": (T_U32, 2**32 - 1), "i32": (T_I32, -(2**31)), "f32": (T_F32, 1.5), "bool": (T_BOOL, 1),
            "str": (T_STR, "héllo ▁wörld"), "u64": (T_U64, 2**64 - 1), "i64": (T_I64, -(2**63)), "f64": (T_F64, -2.25)}
    for k, (t, v) in vals.items():
        r.add("x." + k, t, v)
    r.add("x.arr_i32", T_ARR, (T_I32, [1, -2, 3]))
    r.add("x.arr_str", T_ARR, (T_STR, ["a", "", "ü"]))
    r.add("x.arr_bool", T_ARR, (T_BOOL, [1, 0, 1]))
    r.add("x.arr_f64", T_ARR, (T_F64, [0.5, -1.0]))
    r.add("x.arr_arr", T_ARR, (T_ARR, [(T_U8, [1, 2]), (T_U8, [])]))
    r.add("x.arr_empty", T_ARR, (T_U32, []))
    r.tensors.append(Tensor("w", [4, 2], data=np.arange(8, dtype=np.float32).tobytes()))
    f = open_raw(tmp_path, r)
    assert f.version == version
    for k, (t, v) in vals.items():
        got = f["x." + k]
        assert (got == bool(v)) if t == T_BOOL else (got == v), k
    assert f.value_type("x.u16") == "UINT16" and f.value_type("x.arr_str") == "ARRAY[STRING]"
    assert f["x.arr_i32"].tolist() == [1, -2, 3] and f["x.arr_i32"].dtype == np.int32
    assert f["x.arr_str"] == ["a", "", "ü"]
    assert f["x.arr_bool"].tolist() == [True, False, True]
    assert f["x.arr_f64"].tolist() == [0.5, -1.0]
    assert [a.tolist() for a in f["x.arr_arr"]] == [[1, 2], []]
    assert f["x.arr_empty"].tolist() == []
    assert f.keys()[0] == "general.architecture"
    np.testing.assert_array_equal(f.tensor_float("w"), np.arange(8, dtype=np.float32).reshape(2, 4))


def test_matches_gguf_package_reader(tmp_path):
    """A model written by gguf.GGUFWriter: our metadata, tensor table and bytes agree with
    gguf.GGUFReader field by field."""
    p = tmp_path / "m.gguf"
    tensors = write_gemma4(p)
    f = unigemma.open_gguf(p)
    ref = gguf.GGUFReader(str(p))
    assert set(f.keys()) == {k for k in ref.fields if not k.startswith("GGUF.")}
    for k, field in ref.fields.items():
        if k.startswith("GGUF."):
            continue
        want = field.contents()
        got = f[k]
        got = got.tolist() if isinstance(got, np.ndarray) else got
        if isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-7), k
        else:
            assert got == want, k
    assert [t.name for t in f.tensors] == [t.name for t in ref.tensors]
    for t in ref.tensors:
        info = f.tensor_info(t.name)
        assert list(info.ne) == [int(x) for x in t.shape]
        assert info.offset == int(t.data_offset) - int(ref.data_offset) if hasattr(ref, "data_offset") else True
        raw = f.tensor_bytes(t.name)
        assert not raw.flags.writeable
        np.testing.assert_array_equal(raw, np.frombuffer(t.data.tobytes(), np.uint8))
        np.testing.assert_array_equal(f.tensor_float(t.name), tensors[t.name].reshape(info.shape))


def test_zero_copy_view_outlives_file_object(tmp_path):
    p = tmp_path / "m.gguf"
    tensors = write_gemma4(p)
    f = unigemma.open_gguf(p)
    view = f.tensor_bytes("token_embd.weight")
    del f
    import gc

    gc.collect()
    np.testing.assert_array_equal(view.view(np.float32).reshape(tensors["token_embd.weight"].shape),
                                  tensors["token_embd.weight"])


def test_split_files_merge(tmp_path):
    base = tmp_path / "model.gguf"
    tensors = write_gemma4(base, split_max_tensors=20)
    parts = sorted(tmp_path.glob("model-*-of-*.gguf"))
    assert len(parts) >= 3
    f = unigemma.open_gguf(parts[0])
    assert len(f.paths) == len(parts)
    assert {t.name for t in f.tensors} == set(tensors)
    assert {t.part for t in f.tensors} == set(range(len(parts)))
    for name, arr in tensors.items():
        np.testing.assert_array_equal(f.tensor_float(name).ravel(), arr.ravel())
    # opening a later part names the problem
    with pytest.raises(GGUFError, match="split.no"):
        unigemma.open_gguf(parts[1])
    # a missing part
    parts[-1].unlink()
    with pytest.raises(GGUFError, match="cannot open"):
        unigemma.open_gguf(parts[0])


# ---------------------------------------------------------------- malformed: header


def test_bad_magic(tmp_path):
    expect_error(tmp_path, RawGGUF(magic=b"GGUG"), "bad magic")


@pytest.mark.parametrize("version", [0, 1, 4, 2**32 - 1])
def test_bad_version(tmp_path, version):
    expect_error(tmp_path, RawGGUF(version=version), "unsupported GGUF version", str(version))


def test_empty_and_tiny_files(tmp_path):
    for data in (b"", b"GG", b"GGUF", b"GGUF\x03\x00\x00\x00"):
        with pytest.raises(GGUFError):
            open_raw(tmp_path, data)


def test_tensor_count_larger_than_file(tmp_path):
    expect_error(tmp_path, RawGGUF(n_tensors=2**62), "tensor count")


def test_kv_count_larger_than_file(tmp_path):
    expect_error(tmp_path, RawGGUF(n_kv=2**40), "metadata key count")


# ---------------------------------------------------------------- malformed: metadata


def test_key_string_length_past_eof(tmp_path):
    data = RawGGUF(n_kv=1).prefix() + struct.pack("<Q", 2**40) + b"general"
    expect_error(tmp_path, data, "string of length")


def test_value_string_length_past_eof(tmp_path):
    r = RawGGUF().add("general.name", T_STR, "x")
    data = bytearray(r.build())
    i = data.index(b"general.name") + len("general.name") + 4
    data[i:i + 8] = struct.pack("<Q", 10**12)
    expect_error(tmp_path, bytes(data), "key 'general.name'", "string of length")


@pytest.mark.parametrize("etype,size", [(T_U32, 4), (T_STR, 8), (T_ARR, 12)])
def test_array_length_past_eof(tmp_path, etype, size):
    r = RawGGUF().add("x.arr", T_ARR, (etype, []))
    data = bytearray(r.build())
    i = data.index(b"x.arr") + len("x.arr") + 4 + 4
    data[i:i + 8] = struct.pack("<Q", 2**61 // size)
    expect_error(tmp_path, bytes(data), "key 'x.arr'", "larger than")


def test_unknown_value_type(tmp_path):
    data = RawGGUF(n_kv=1).prefix() + struct.pack("<Q", 3) + b"a.b" + struct.pack("<I", 13) + b"\0" * 8
    expect_error(tmp_path, data, "key 'a.b'", "unknown value type 13")


def test_unknown_array_element_type(tmp_path):
    data = RawGGUF(n_kv=1).prefix() + struct.pack("<Q", 3) + b"a.b" + struct.pack("<IIQ", T_ARR, 99, 0)
    expect_error(tmp_path, data, "key 'a.b'", "unknown array element type 99")


def test_bool_not_0_or_1(tmp_path):
    expect_error(tmp_path, RawGGUF().add("x.flag", T_BOOL, 7), "key 'x.flag'", "bool")


def test_duplicate_key(tmp_path):
    r = RawGGUF().add("general.name", T_STR, "a").add("general.name", T_STR, "b")
    expect_error(tmp_path, r, "duplicate metadata key 'general.name'")


def test_empty_key(tmp_path):
    expect_error(tmp_path, RawGGUF().add("", T_U8, 1), "is empty")


def test_deeply_nested_arrays(tmp_path):
    v = (T_U8, [])
    for _ in range(6):
        v = (T_ARR, [v])
    expect_error(tmp_path, RawGGUF().add("x.deep", T_ARR, v), "key 'x.deep", "nested")


@pytest.mark.parametrize("align", [0, 3, 48, 2**31 + 1])
def test_alignment_not_power_of_two(tmp_path, align):
    expect_error(tmp_path, RawGGUF().add("general.alignment", T_U32, align), "general.alignment", "power of two")


@pytest.mark.parametrize("vtype,v", [(T_U64, 32), (T_I32, 32), (T_STR, "32"), (T_F32, 32.0)])
def test_alignment_wrong_type(tmp_path, vtype, v):
    expect_error(tmp_path, RawGGUF().add("general.alignment", vtype, v), "general.alignment", "UINT32")


def test_custom_alignment_is_honoured(tmp_path):
    r = RawGGUF(alignment=64).add("general.alignment", T_U32, 64)
    r.tensors += [Tensor("a", [3], data=np.ones(3, np.float32).tobytes()),
                  Tensor("b", [5], data=np.full(5, 2, np.float32).tobytes())]
    f = open_raw(tmp_path, r)
    assert f.alignment == 64 and f.tensor_info("b").offset == 64
    np.testing.assert_array_equal(f.tensor_float("b"), np.full(5, 2, np.float32))


# ---------------------------------------------------------------- malformed: tensor table


def one_tensor(**kw) -> RawGGUF:
    r = RawGGUF()
    r.tensors.append(Tensor(**{"name": "w", "ne": [4, 2], **kw}))
    return r


def test_more_than_four_dims(tmp_path):
    expect_error(tmp_path, one_tensor(ne=[1, 1, 1, 1, 1]), "tensor 'w'", "5 dims")


def test_zero_dims(tmp_path):
    expect_error(tmp_path, one_tensor(ne=[]), "tensor 'w'", "0 dims")


def test_zero_dim(tmp_path):
    expect_error(tmp_path, one_tensor(ne=[4, 0], data=b""), "tensor 'w'", "dim 1 is 0")


def test_negative_dim(tmp_path):
    expect_error(tmp_path, one_tensor(ne=[-4, 2], data=b""), "tensor 'w'", "dim 0 is -4")


def test_element_count_overflow(tmp_path):
    expect_error(tmp_path, one_tensor(ne=[2**32, 2**32, 4], data=b""), "tensor 'w'", "element count overflows")


def test_byte_size_overflow(tmp_path):
    # 2^62 F32 elements fit int64 as a count, but not as 4 * 2^62 bytes
    expect_error(tmp_path, one_tensor(ne=[2**31, 2**31], data=b""), "tensor 'w'", "byte size overflows")


def test_unknown_tensor_type(tmp_path):
    expect_error(tmp_path, one_tensor(ggml_type=4, data=b""), "tensor 'w'", "unknown tensor type 4")
    expect_error(tmp_path, one_tensor(ggml_type=1000, data=b""), "tensor 'w'", "unknown tensor type 1000")


def test_row_not_multiple_of_block(tmp_path):
    expect_error(tmp_path, one_tensor(ne=[48, 2], ggml_type=8, data=bytes(34 * 3)), "tensor 'w'", "block size")


def test_misaligned_offset(tmp_path):
    expect_error(tmp_path, one_tensor(offset=4), "tensor 'w'", "not a multiple of the alignment")


def test_offset_past_eof(tmp_path):
    expect_error(tmp_path, one_tensor(offset=2**40, data=b""), "tensor 'w'", "past the end")


def test_data_truncated(tmp_path):
    data = one_tensor(data=np.ones(8, np.float32).tobytes()).build()
    expect_error(tmp_path, data[:-4], "tensor 'w'", "past the end")


def test_overlapping_tensors(tmp_path):
    r = RawGGUF()
    r.tensors += [Tensor("a", [16]), Tensor("b", [16], offset=32)]  # a occupies [0, 64)
    expect_error(tmp_path, r, "tensor 'b'", "overlaps")


def test_out_of_order_tensors(tmp_path):
    r = RawGGUF()
    r.tensors += [Tensor("a", [8], offset=64), Tensor("b", [8], offset=0)]
    expect_error(tmp_path, r, "tensor 'b'", "precedes")


def test_duplicate_tensor_name(tmp_path):
    r = RawGGUF()
    r.tensors += [Tensor("w", [8]), Tensor("w", [8])]
    expect_error(tmp_path, r, "duplicate tensor 'w'")


def test_empty_tensor_name(tmp_path):
    r = RawGGUF()
    r.tensors += [Tensor("", [8])]
    expect_error(tmp_path, r, "empty name")


def test_not_a_file(tmp_path):
    with pytest.raises(GGUFError, match="not a regular file"):
        unigemma.open_gguf(tmp_path)
    with pytest.raises(GGUFError, match="cannot open"):
        unigemma.open_gguf(tmp_path / "missing.gguf")


# ---------------------------------------------------------------- model schema


@pytest.mark.parametrize("key", ["gemma4.block_count", "gemma4.embedding_length", "gemma4.attention.head_count",
                                 "gemma4.attention.key_length_swa", "gemma4.attention.sliding_window_pattern",
                                 "gemma4.attention.layer_norm_rms_epsilon", "gemma4.embedding_length_per_layer_input"])
def test_missing_required_model_key(tmp_path, key):
    p = tmp_path / "m.gguf"
    write_gemma4(p, drop_keys={key})
    with pytest.raises(GGUFError, match=f"'{key}'"):
        unigemma.open_gguf(p)
    unigemma.open_gguf(p, validate_model=False)  # the file itself is well-formed


def test_missing_architecture(tmp_path):
    r = RawGGUF().add("general.name", T_STR, "x")
    expect_error(tmp_path, r, "general.architecture", validate_model=True)


def test_wrong_key_type(tmp_path):
    p = tmp_path / "m.gguf"
    write_gemma4(p, key_overrides={"gemma4.attention.layer_norm_rms_epsilon": ("u32", 1)})
    with pytest.raises(GGUFError, match="layer_norm_rms_epsilon"):
        unigemma.open_gguf(p)


@pytest.mark.parametrize("name,shape", [("blk.1.attn_q.weight", (2 * 16 + 1, 32)), ("blk.2.attn_q.weight", (2 * 16, 32)),
                                        ("token_embd.weight", (23, 32)), ("blk.0.ffn_down.weight", (32, 65)),
                                        ("blk.2.attn_k_norm.weight", (16,)), ("output_norm.weight", (31,))])
def test_shape_disagrees_with_hparams(tmp_path, name, shape):
    p = tmp_path / "m.gguf"
    write_gemma4(p, tensor_overrides={name: np.zeros(shape, np.float32)})
    with pytest.raises(GGUFError, match=f"tensor '{name}'.*disagrees"):
        unigemma.open_gguf(p)


def test_missing_required_tensor(tmp_path):
    p = tmp_path / "m.gguf"
    write_gemma4(p, drop_tensors={"blk.1.ffn_up.weight"})
    with pytest.raises(GGUFError, match="missing required tensor 'blk.1.ffn_up.weight'"):
        unigemma.open_gguf(p)


def test_pattern_length_disagrees(tmp_path):
    p = tmp_path / "m.gguf"
    write_gemma4(p, key_overrides={"gemma4.attention.sliding_window_pattern": ("boolarr", [True, False])})
    with pytest.raises(GGUFError, match="sliding_window_pattern.*block_count"):
        unigemma.open_gguf(p)


@pytest.mark.parametrize("n", [0, 513, 2**32 - 1])
def test_absurd_block_count_raises_instead_of_aborting(tmp_path, n):
    p = tmp_path / "m.gguf"
    write_gemma4(p, key_overrides={"gemma4.block_count": ("u32", n)})
    with pytest.raises(GGUFError, match="block_count"):
        unigemma.open_gguf(p)


def test_per_layer_arrays(tmp_path):
    p = tmp_path / "m.gguf"
    write_gemma4(p, key_overrides={"gemma4.feed_forward_length": ("i32arr", [64, 64, 64]),
                                   "gemma4.attention.head_count_kv": ("i32arr", [1, 1, 1])})
    unigemma.open_gguf(p)
    write_gemma4(p, key_overrides={"gemma4.feed_forward_length": ("i32arr", [64, 64, 128])})
    with pytest.raises(GGUFError, match="blk.2.ffn_gate.weight"):
        unigemma.open_gguf(p)
    write_gemma4(p, key_overrides={"gemma4.feed_forward_length": ("i32arr", [64, 64])})
    with pytest.raises(GGUFError, match="feed_forward_length.*2 entries"):
        unigemma.open_gguf(p)
