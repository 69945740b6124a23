"""Images -> Gemma 4 Unified vision patches, bit-exact with transformers 5.23.0's
`Gemma4UnifiedImageProcessor` (torchvision backend, torch 2.14.1 / torchvision 0.29.1).

Pipeline (docs/preprocessing.md has the details and the choices made where transformers is
silent or inconsistent):

1. `load_image`: decode with Pillow, apply the EXIF orientation, convert to RGB the way
   `transformers.image_utils.load_image` does (alpha dropped, palette expanded, CMYK through
   Pillow's conversion), except 16-bit grayscale, which is scaled to 8 bits instead of clipped.
2. `preprocess_image`: resize to the budget's target size (each side a multiple of 48, the
   image stretched, scaled up or down) with the torch-exact antialiased bicubic resampler in
   C++ (`_core.resize_bicubic_aa`); uint8 -> float32 as `x * float32(1/255)` (torch multiplies
   the uint8 tensor by the Python float 1/255, i.e. by its float32 rounding); cut into 48x48
   merged patches, each flattened row-major over (row, column, channel).

Only real patches are returned (no padding rows up to `max_soft_tokens`, no (-1, -1)
positions): the model drops those anyway.
"""
from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import MediaError

SUPPORTED_BUDGETS = (70, 140, 280, 560, 1120)
PATCH_SIZE = 16  # teacher patch side, pixels
POOLING_KERNEL = 3  # teacher patches merged per side
MERGED_PATCH = PATCH_SIZE * POOLING_KERNEL  # 48: side of one soft token's pixel block
PATCH_DIM = MERGED_PATCH * MERGED_PATCH * 3  # 6912 values per soft token
# Default decode limit in pixels (width * height), checked from the header before decoding.
MAX_IMAGE_PIXELS = 100_000_000

# uint8 -> float32 as the image processor computes it: uint8 tensor * 1/255 runs in float32
# with the scalar rounded to float32 (verified bit for bit against torch on all 256 values).
_RESCALE_LUT = np.arange(256, dtype=np.float32) * np.float32(1.0 / 255.0)


@dataclass
class VisionPatches:
    """One image's (or video frame's) model input.

    pixel_values: float32 (n_tokens, 6912), merged 48x48x3 patches in row-major order, each
        flattened over (row, column, channel); exactly the reference's values, without the
        zero padding rows the reference appends up to `max_soft_tokens`.
    positions: int32 (n_tokens, 2), (x = column, y = row) of each patch in merged-patch units.
    n_tokens: number of soft tokens (= rows of pixel_values).
    resized_hw: (height, width) of the resized image the patches were cut from.
    """

    pixel_values: np.ndarray
    positions: np.ndarray
    n_tokens: int
    resized_hw: tuple[int, int]


def _check_budget(max_soft_tokens, op: str) -> int:
    if isinstance(max_soft_tokens, bool) or not isinstance(max_soft_tokens, (int, np.integer)):
        raise MediaError(f"{op}: max_soft_tokens must be an int, got {type(max_soft_tokens).__name__}")
    if int(max_soft_tokens) not in SUPPORTED_BUDGETS:
        raise MediaError(f"{op}: max_soft_tokens must be one of {SUPPORTED_BUDGETS}, got {max_soft_tokens}")
    return int(max_soft_tokens)


def _check_side(v, name: str, op: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise MediaError(f"{op}: {name} must be a positive int, got {v!r}")
    return int(v)


def resized_size(height: int, width: int, max_soft_tokens: int = 280) -> tuple[int, int]:
    """(height, width) the processor resizes a height x width image to: the largest multiples
    of 48 per side (floored independently) that keep the pixel count within the budget of
    max_soft_tokens * 9 teacher patches of 16x16. A side that floors to 0 becomes 48, and the
    other becomes floor(long / short) * 48, capped at max_soft_tokens * 48.

    The arithmetic is the reference's, in Python floats (math.sqrt, math.floor)."""
    op = "resized_size"
    budget = _check_budget(max_soft_tokens, op)
    h, w = _check_side(height, "height", op), _check_side(width, "width", op)
    max_patches = budget * POOLING_KERNEL**2
    target_px = max_patches * PATCH_SIZE**2
    factor = math.sqrt(target_px / (h * w))
    th = int(math.floor(factor * h / MERGED_PATCH)) * MERGED_PATCH
    tw = int(math.floor(factor * w / MERGED_PATCH)) * MERGED_PATCH
    if th == 0 and tw == 0:  # unreachable for the supported budgets; kept as the reference has it
        raise MediaError(f"{op}: a {h}x{w} image would resize to 0x0")
    max_side = (max_patches // POOLING_KERNEL**2) * MERGED_PATCH
    if th == 0:
        th, tw = MERGED_PATCH, min(int(math.floor(w / h)) * MERGED_PATCH, max_side)
    elif tw == 0:
        th, tw = min(int(math.floor(h / w)) * MERGED_PATCH, max_side), MERGED_PATCH
    if th * tw > target_px:  # unreachable by construction; the reference checks it too
        raise MediaError(f"{op}: resizing {h}x{w} to {th}x{tw} exceeds {max_patches} patches")
    return th, tw


def image_token_count(height: int, width: int, max_soft_tokens: int = 280) -> int:
    """Soft tokens an image of height x width pixels becomes (one per 48x48 merged patch)."""
    th, tw = resized_size(height, width, max_soft_tokens)
    return (th // MERGED_PATCH) * (tw // MERGED_PATCH)


# ---------------------------------------------------------------------------------------------
# Loading


def _composite_rgba_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 -> (H, W, 3) uint8, blending over white in float32 the way the image
    processor's `convert_to_rgb` does for 4-channel arrays: to [0, 1] as x * float32(1/255),
    rgb * a + (1 - a) (separately rounded multiply and add), back with * float32(255.999) and
    truncation (torchvision's float -> uint8 `to_dtype(scale=True)`)."""
    f = rgba.astype(np.float32) * np.float32(1.0 / 255.0)
    a = f[..., 3:]
    blended = f[..., :3] * a + (np.float32(1.0) - a)
    return (blended * np.float32(255.999)).astype(np.uint8)


def _array_to_rgb(arr: np.ndarray, max_pixels: int) -> np.ndarray:
    """An in-memory HWC array -> uint8 (H, W, 3). uint8 arrays get what the image processor
    does to arrays (gray repeated, RGBA composited over white); float arrays in [0, 1] are
    first rounded to uint8 (our choice: transformers has no such conversion)."""
    op = "load_image(array)"
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise MediaError(f"{op}: expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise MediaError(f"{op}: empty image of shape {arr.shape}")
    if arr.shape[0] * arr.shape[1] > max_pixels:
        raise MediaError(f"{op}: {arr.shape[1]}x{arr.shape[0]} pixels exceeds the limit of {max_pixels}")
    if arr.dtype == np.uint8:
        u8 = arr
    elif arr.dtype in (np.float16, np.float32, np.float64):
        f = arr.astype(np.float64)
        if not np.isfinite(f).all():
            raise MediaError(f"{op}: float image contains NaN or infinity")
        if f.min() < 0.0 or f.max() > 1.0:
            raise MediaError(f"{op}: float image values must lie in [0, 1], got [{f.min()}, {f.max()}]")
        u8 = np.rint(f * 255.0).astype(np.uint8)
    else:
        raise MediaError(f"{op}: unsupported dtype {arr.dtype} (use uint8, or float in [0, 1])")
    if u8.ndim == 2:
        u8 = u8[..., None]
    if u8.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(u8, 3, axis=2))
    if u8.shape[2] == 4:
        return _composite_rgba_on_white(u8)
    return np.ascontiguousarray(u8)


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _pil_to_rgb(im, name: str) -> np.ndarray:
    """A decoded Pillow image -> uint8 (H, W, 3): EXIF orientation, then RGB conversion."""
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode in _SIXTEEN_BIT_MODES:
        # Deviation (documented): Pillow's I;16 -> RGB conversion, which transformers'
        # load_image uses, clips every value above 255 (a 16-bit image turns white), and the
        # torchvision decoder hands the processor uint16. We map the 16-bit range linearly:
        # round(v / 257), the inverse of the usual 8 -> 16 bit expansion v * 257.
        v = np.clip(np.asarray(im, dtype=np.int64), 0, 65535)
        g = ((v + 128) // 257).astype(np.uint8)  # 257 is odd, so (v + 128) // 257 has no ties
        return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))
    rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise MediaError(f"load_image({name}): decoded to an unusable array of shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _checked_pil_to_rgb(im, name: str, limit: int) -> np.ndarray:
    w, h = im.size  # from the header: nothing decoded yet
    if w <= 0 or h <= 0:
        raise MediaError(f"load_image({name}): image has zero size ({w}x{h})")
    if w * h > limit:
        raise MediaError(
            f"load_image({name}): {w}x{h} = {w * h} pixels exceeds the limit of {limit} "
            "(max_pixels); refusing to decode"
        )
    return _pil_to_rgb(im, name)


def _describe(src) -> str:
    if isinstance(src, (str, os.PathLike)):
        return repr(os.fspath(src))
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    return f"<{type(src).__name__}>"


def load_image(src, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image into the uint8 (H, W, 3) RGB array that transformers' `load_image`
    hands the Gemma 4 image processor.

    src: a path (str or os.PathLike), the file's bytes, a PIL.Image.Image, or a NumPy array in
        HWC layout: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), uint8 or float in [0, 1]
        (floats are rounded to uint8; 4 channels are composited over white as the processor
        does for arrays).
    max_pixels: refuse images with more than this many pixels (width * height), checked from
        the file header before any pixel is decoded. Default `MAX_IMAGE_PIXELS` (100 MP).

    Raises MediaError for a missing, unreadable, truncated or non-image file, an unsupported
    array, or an image over the pixel limit.
    """
    limit = MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    if limit < 1:
        raise MediaError(f"load_image: max_pixels must be positive, got {max_pixels}")
    if isinstance(src, np.ndarray):
        return _array_to_rgb(src, limit)

    from PIL import Image

    name = _describe(src)
    if isinstance(src, Image.Image):
        fp = None
    elif isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise MediaError("load_image(<0 bytes>): empty input")
        fp = io.BytesIO(bytes(src))
    elif isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        if not os.path.isfile(path):
            raise MediaError(f"load_image({name}): no such file")
        fp = path
    else:
        raise MediaError(
            f"load_image: unsupported source type {type(src).__name__} "
            "(expected a path, bytes, a PIL image or a NumPy array)"
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89.5 MP and refuses from 179 MP on its own; our limit is the one
            # that counts, so its warning is noise. Its hard error still applies above 179 MP.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if fp is None:
                return _checked_pil_to_rgb(src, name, limit)
            with Image.open(fp) as im:
                return _checked_pil_to_rgb(im, name, limit)
    except MediaError:
        raise
    except Image.DecompressionBombError as e:
        raise MediaError(f"load_image({name}): refused by Pillow's decompression-bomb check: {e}") from e
    except Image.UnidentifiedImageError as e:
        raise MediaError(f"load_image({name}): not a recognized image format") from e
    except MemoryError as e:
        raise MediaError(f"load_image({name}): out of memory while decoding") from e
    except Exception as e:  # Pillow reports corrupt data as OSError, SyntaxError, ValueError, ...
        raise MediaError(f"load_image({name}): cannot decode: {type(e).__name__}: {e}") from e


# ---------------------------------------------------------------------------------------------
# Resize + patchify


def _check_rgb_u8(img, op: str) -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise MediaError(f"{op}: expected a NumPy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise MediaError(f"{op}: expected dtype uint8, got {img.dtype} (use load_image first)")
    if img.ndim != 3 or img.shape[2] != 3:
        raise MediaError(f"{op}: expected shape (H, W, 3), got {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise MediaError(f"{op}: empty image of shape {img.shape}")
    return img


def resize_to_budget(img_u8_hw3: np.ndarray, max_soft_tokens: int) -> np.ndarray:
    """The uint8 (th, tw, 3) image the processor cuts into patches: `img` resized to
    `resized_size` (torchvision antialiased bicubic, bit-exact), or `img` itself when the size
    already matches."""
    from .. import _core

    img = _check_rgb_u8(img_u8_hw3, "resize_to_budget")
    th, tw = resized_size(img.shape[0], img.shape[1], max_soft_tokens)
    if (th, tw) == img.shape[:2]:
        return img
    return _core.resize_bicubic_aa(img, th, tw)


def patchify(resized_u8: np.ndarray, lut: np.ndarray) -> VisionPatches:
    """Cut a uint8 (th, tw, 3) image (sides multiples of 48) into merged patches, mapping
    uint8 -> float32 through `lut` (256 entries: the processor's rescale)."""
    th, tw = resized_u8.shape[:2]
    mh, mw = th // MERGED_PATCH, tw // MERGED_PATCH
    # (mh, 48, mw, 48, 3) -> (mh, mw, 48, 48, 3): patch-major, then row, column, channel.
    blocks = resized_u8.reshape(mh, MERGED_PATCH, mw, MERGED_PATCH, 3).transpose(0, 2, 1, 3, 4)
    pixel_values = lut[blocks.reshape(mh * mw, PATCH_DIM)]
    cols, rows = np.meshgrid(np.arange(mw, dtype=np.int32), np.arange(mh, dtype=np.int32))
    positions = np.stack([cols.ravel(), rows.ravel()], axis=1)
    return VisionPatches(pixel_values=pixel_values, positions=positions, n_tokens=mh * mw, resized_hw=(th, tw))


def preprocess_image(img_u8_hw3: np.ndarray, max_soft_tokens: int = 280) -> VisionPatches:
    """uint8 (H, W, 3) RGB (as `load_image` returns) -> the image processor's patches for one
    image, at most `max_soft_tokens` of them (70, 140, 280, 560 or 1120)."""
    _check_budget(max_soft_tokens, "preprocess_image")
    _check_rgb_u8(img_u8_hw3, "preprocess_image")
    return patchify(resize_to_budget(img_u8_hw3, max_soft_tokens), _RESCALE_LUT)
