"""Synthetic media inputs shared by the multimodal tests and tools/logits_digest.py: fixed
recipes from a seed, so two runs (or two builds) see the same pixels and samples."""
from __future__ import annotations

import numpy as np


def media_inputs(seed: int):
    """Two images of different shapes (photo-like RGB uint8 arrays) and one audio clip."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:300, 0:420]
    a = np.stack([(xs * 0.6 + 40 * np.sin(ys / 17.0)) % 256, (ys * 0.8) % 256, (xs + ys) % 256], -1)
    img1 = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    img2 = rng.integers(0, 256, size=(500, 210, 3), dtype=np.uint8)
    audio = (0.3 * np.sin(np.arange(9000) / 7.0) + rng.normal(0, 0.05, 9000)).astype(np.float32)
    return img1, img2, audio
