"""Token sampler (csrc/runtime/sampler.cpp) against an independent float64 NumPy reference of
the documented semantics (sampler.cpp's header comment):

* logit processing: bias (summed, rounded to float32), suppress -> -inf, then once per distinct
  token in the last `penalty_last_n` history tokens: l > 0 ? l / rep : l * rep, then
  l -= count * freq + pres, rounded to float32. Compared within 1 float32 ulp.
* greedy (temperature <= 0) == np.argmax (first maximum) of the processed logits.
* kept set: order by (logit desc, id asc); top-k prefix; top-p = shortest prefix whose
  softmax(T=1) mass over the top-k survivors reaches p, i.e. token kept iff the mass strictly
  before it is < p; min-p = exp(l - l_max) >= min_p. The filters see T = 1 whatever the
  temperature. Observed by drawing with temperature 1e30 (weights exp(dl / 1e30) == 1.0 in
  double, so the draw is uniform over the kept set): with <= 40 kept tokens and 1500 draws the
  chance that some kept token is never drawn is <= 40 * (39/40)^1500 ~ 1e-15. Tokens within
  1e-9 of a top-p / min-p threshold are left out of the comparison (the C++ sums in a
  different order, and libm's exp may differ by an ulp).
* frequencies: chi-square goodness of fit of 200000 draws against exp((l - l_max) / T) over the
  kept set; the threshold is the chi-square quantile at 1e-6 (Wilson-Hilferty), fixed seeds.
* the exact token sequence for a seed: a pure-Python MT19937-64 (checked against the value the
  C++ standard requires of std::mt19937_64: the 10000th output for the default seed 5489 is
  9981545732273789042), u = (x >> 11) * 2^-53, walk the kept set in ascending id order until
  the running weight sum exceeds u * W.
"""
from __future__ import annotations

import math
import time
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from unigemma import InputError
from unigemma._core import Sampler

F32 = np.float32
INF = math.inf
HUGE_T = 1e30  # uniform over the kept set, see the module docstring
AMBIG = 1e-9


# ----------------------------------------------------------------------------- reference


def f32(x: float) -> float:
    return float(F32(x))


def ref_process(logits, history=(), *, logit_bias=None, suppress=None, repetition_penalty=1.0,
                frequency_penalty=0.0, presence_penalty=0.0, penalty_last_n=64):
    l = np.asarray(logits, dtype=np.float32).astype(np.float64)
    for tok, b in (logit_bias or {}).items():
        l[tok] = f32(l[tok] + f32(b))
    for tok in suppress or ():
        l[tok] = -INF
    rep, freq, pres = f32(repetition_penalty), f32(frequency_penalty), f32(presence_penalty)
    history = list(history)
    if penalty_last_n == -1:
        window = history
    elif penalty_last_n == 0:
        window = []
    else:
        window = history[len(history) - min(len(history), penalty_last_n):]
    for tok, count in Counter(window).items():
        v = l[tok]
        if rep != 1.0:
            v = v / rep if v > 0 else v * rep
        v -= count * freq + pres
        l[tok] = f32(v)
    return l


def ref_order(l):
    """Token ids by logit descending, ties by lower id, -inf dropped."""
    ids = np.arange(len(l))
    order = np.lexsort((ids, -l))
    return order[l[order] > -INF]


def ref_kept(l, top_k=0, top_p=1.0, min_p=0.0):
    """(sure_kept, sure_dropped) sets of token ids; the rest is within AMBIG of a threshold."""
    top_p, min_p = f32(top_p), f32(min_p)
    order = ref_order(l)
    if top_k > 0:
        order = order[:top_k]
    e = np.exp(l[order] - l[order[0]])
    keep = np.ones(len(order), bool)
    ambiguous = np.zeros(len(order), bool)
    if top_p < 1.0:
        before = np.concatenate([[0.0], np.cumsum(e)[:-1]]) / e.sum()
        keep &= before < top_p
        ambiguous |= np.abs(before - top_p) <= AMBIG
    if min_p > 0.0:
        keep &= e >= min_p
        ambiguous |= np.abs(e - min_p) <= AMBIG
    sure_kept = {int(t) for t in order[keep & ~ambiguous]}
    maybe = {int(t) for t in order[ambiguous]}
    sure_dropped = set(range(len(l))) - sure_kept - maybe
    return sure_kept, sure_dropped


def ref_probs(l, kept, temperature):
    kept = sorted(kept)
    m = l[kept].max()
    w = np.exp((l[kept] - m) / f32(temperature))
    return kept, w / w.sum()


class MT19937_64:
    """The 64-bit Mersenne Twister as the C++ standard defines std::mt19937_64."""

    N, M, MASK = 312, 156, (1 << 64) - 1
    UPPER, LOWER, A = 0xFFFFFFFF80000000, 0x7FFFFFFF, 0xB5026F5AA96619E9

    def __init__(self, seed: int):
        mt = [seed & self.MASK]
        for i in range(1, self.N):
            mt.append((6364136223846793005 * (mt[-1] ^ (mt[-1] >> 62)) + i) & self.MASK)
        self.mt, self.i = mt, self.N

    def __call__(self) -> int:
        if self.i >= self.N:
            mt = self.mt
            for k in range(self.N):
                y = (mt[k] & self.UPPER) | (mt[(k + 1) % self.N] & self.LOWER)
                mt[k] = mt[(k + self.M) % self.N] ^ (y >> 1) ^ (self.A if y & 1 else 0)
            self.i = 0
        x = self.mt[self.i]
        self.i += 1
        x ^= (x >> 29) & 0x5555555555555555
        x ^= (x << 17) & 0x71D67FFFEDA60000
        x ^= (x << 37) & 0xFFF7EEE000000000
        x ^= x >> 43
        return x & self.MASK


def ref_sequence(l, kept, temperature, seed, n):
    kept, _ = ref_probs(l, kept, temperature)
    kept = np.array(kept)
    w = np.exp((l[kept] - l[kept].max()) / f32(temperature))
    cum = np.cumsum(w)  # sequential, in ascending id order, like the walk in the C++
    total = cum[-1]
    last_positive = kept[np.nonzero(w > 0)[0][-1]]
    rng, out = MT19937_64(seed), []
    for _ in range(n):
        target = (rng() >> 11) * 2.0**-53 * total
        i = int(np.searchsorted(cum, target, side="right"))  # first running sum > target
        out.append(int(kept[i]) if i < len(kept) else int(last_positive))
    return out


def chi2_threshold(df: int, z: float = 4.753) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile at upper tail ~1e-6 (z)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def draw_set(s: Sampler, logits, n, history=()):
    return {s.sample(logits, list(history)) for _ in range(n)}


# ----------------------------------------------------------------------------- strategies

GRID = [-INF, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 2.5]


@st.composite
def logit_rows(draw, min_size=1, max_size=40, allow_neg_inf=True):
    n = draw(st.integers(min_size, max_size))
    if draw(st.booleans()):  # coarse grid: many exact ties
        elems = st.sampled_from(GRID if allow_neg_inf else GRID[1:])
    else:
        elems = st.floats(-20, 20, width=32)
        if allow_neg_inf:
            elems = st.one_of(elems, st.just(-INF))
    row = np.array(draw(st.lists(elems, min_size=n, max_size=n)), dtype=np.float32)
    return row


unit_open = st.floats(0, 1, exclude_min=True, width=32)


# ----------------------------------------------------------------------------- self-checks


def test_reference_mt19937_64_matches_the_standard():
    rng = MT19937_64(5489)
    for _ in range(9999):
        rng()
    assert rng() == 9981545732273789042


# ----------------------------------------------------------------------------- greedy


@settings(max_examples=200, deadline=None)
@given(logit_rows())
def test_greedy_is_argmax_first_on_ties(row):
    s = Sampler(len(row), temperature=0.0)
    assert s.sample(row, []) == int(np.argmax(row))


@pytest.mark.parametrize("temperature", [0.0, -1.0, -INF])
def test_greedy_edge_rows(temperature):
    s = Sampler(5, temperature=temperature)
    assert s.sample(np.full(5, -INF, np.float32), []) == 0
    assert s.sample(np.full(5, 3.0, np.float32), []) == 0
    assert s.sample(np.array([1, 7, 7, 2, 7], np.float32), []) == 1
    assert s.sample(np.array([-INF, -INF, -5, -INF, -5], np.float32), []) == 2
    assert s.sample(np.array([1, INF, 2, INF, 0], np.float32), []) == 1


def test_nan_logits_raise():
    row = np.zeros(8, np.float32)
    row[5] = np.nan
    for t in (0.0, 1.0):
        with pytest.raises(InputError, match=r"^\[sampler\] logits\[5\] is NaN"):
            Sampler(8, temperature=t).sample(row, [])


def test_sample_does_not_modify_logits():
    row = np.linspace(-2, 2, 16, dtype=np.float32)
    keep = row.copy()
    s = Sampler(16, temperature=1.0, top_k=3, logit_bias={0: 5.0}, suppress=[15], repetition_penalty=1.3)
    s.sample(row, [1, 2, 2])
    s.process_logits(row, [1, 2, 2])
    np.testing.assert_array_equal(row, keep)


# ----------------------------------------------------------------------------- penalties, bias


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_processing_matches_reference(data):
    row = data.draw(logit_rows(max_size=30))
    V = len(row)
    tok = st.integers(0, V - 1)
    history = data.draw(st.lists(tok, max_size=80))
    kw = dict(
        repetition_penalty=data.draw(st.sampled_from([1.0]) | st.floats(0.0625, 4.0, width=32)),
        frequency_penalty=data.draw(st.sampled_from([0.0]) | st.floats(-2, 2, width=32)),
        presence_penalty=data.draw(st.sampled_from([0.0]) | st.floats(-2, 2, width=32)),
        penalty_last_n=data.draw(st.sampled_from([-1, 0, 1, 3, 64]) | st.integers(0, 100)),
        logit_bias=data.draw(st.dictionaries(tok, st.floats(-10, 10, width=32) | st.just(-INF), max_size=5)),
        suppress=data.draw(st.lists(tok, max_size=4)),
    )
    got = Sampler(V, **kw).process_logits(row, history).astype(np.float64)
    want = ref_process(row, history, **kw)
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf])
    np.testing.assert_array_max_ulp(got[~inf].astype(np.float32), want[~inf].astype(np.float32), maxulp=1)
    # sample() uses the same processing: greedy on it is the reference argmax
    assert Sampler(V, **kw).sample(row, history) == int(np.argmax(want))


def test_penalties_by_hand():
    # independent of ref_process: numbers worked out on paper
    row = np.array([2.0, -1.0, 0.5, 3.0, 0.0], np.float32)
    s = Sampler(5, repetition_penalty=2.0, frequency_penalty=0.25, presence_penalty=0.5, penalty_last_n=4)
    # window = last 4 = [1, 1, 0, 4]; token 3 is outside the window
    got = s.process_logits(row, [3, 3, 1, 1, 0, 4])
    want = [2.0 / 2 - 0.25 - 0.5, -1.0 * 2 - 0.5 - 0.5, 0.5, 3.0, 0.0 - 0.25 - 0.5]
    np.testing.assert_array_equal(got, np.array(want, np.float32))
    # -1: the whole history; 0: off
    got = Sampler(5, frequency_penalty=1.0, penalty_last_n=-1).process_logits(row, [3, 3, 1, 1, 0, 4])
    np.testing.assert_array_equal(got, np.array([1.0, -3.0, 0.5, 1.0, -1.0], np.float32))
    got = Sampler(5, frequency_penalty=1.0, penalty_last_n=0).process_logits(row, [3, 3, 1])
    np.testing.assert_array_equal(got, row)


def test_bias_and_suppress_ban_and_force():
    row = np.array([5.0, 4.0, 0.0, -1.0, 4.5], np.float32)
    s = Sampler(5, temperature=HUGE_T, logit_bias={0: -INF})
    assert draw_set(s, row, 1000) == {1, 2, 3, 4}
    assert Sampler(5, logit_bias={0: -INF}).sample(row, []) == 4  # greedy moves to the next best
    s = Sampler(5, temperature=HUGE_T, suppress=[0, 4], logit_bias={4: 100.0})
    assert draw_set(s, row, 1000) == {1, 2, 3}
    s = Sampler(5, temperature=1.0, logit_bias={3: INF})
    assert draw_set(s, row, 200) == {3}
    s = Sampler(5, temperature=1.0, suppress=[0, 1, 2, 3, 4])
    with pytest.raises(InputError, match=r"^\[sampler\] every logit is -inf"):
        s.sample(row, [])


# ----------------------------------------------------------------------------- kept sets


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_kept_set_matches_reference(data):
    row = data.draw(logit_rows())
    assume(np.isfinite(row).any())
    V = len(row)
    top_k = data.draw(st.sampled_from([0, 1, 2, 5]) | st.integers(-1, V + 2))
    top_p = data.draw(st.sampled_from([1.0]) | unit_open)
    min_p = data.draw(st.sampled_from([0.0, 1.0]) | st.floats(0, 1, width=32))
    sure_kept, sure_dropped = ref_kept(row.astype(np.float64), top_k, top_p, min_p)
    s = Sampler(V, temperature=HUGE_T, top_k=top_k, top_p=top_p, min_p=min_p, seed=data.draw(st.integers(0, 99)))
    seen = draw_set(s, row, 1500)
    assert sure_kept <= seen
    assert not (seen & sure_dropped)


def test_filters_use_the_temperature_free_distribution():
    # softmax([2, 1, 0]) = [.665, .245, .090]: top_p 0.6 keeps {0}, min_p 0.3 keeps {0, 1}.
    # Were the temperature applied first, T = 100 would flatten them and keep more.
    row = np.array([2.0, 1.0, 0.0], np.float32)
    for t in (0.01, 1.0, 100.0, HUGE_T):
        assert draw_set(Sampler(3, temperature=t, top_p=0.6), row, 300) == {0}
        assert draw_set(Sampler(3, temperature=t, min_p=0.3), row, 300) == ({0} if t == 0.01 else {0, 1})


def test_top_k_ties_keep_the_lowest_ids():
    row = np.array([1.0, 3.0, 3.0, 0.0, 3.0, 3.0], np.float32)
    assert draw_set(Sampler(6, temperature=1.0, top_k=2), row, 500) == {1, 2}
    assert draw_set(Sampler(6, temperature=1.0, top_k=3, top_p=0.5), row, 500) == {1, 2}


# ----------------------------------------------------------------------------- frequencies

FREQ_CASES = [
    dict(temperature=1.0),
    dict(temperature=0.7, top_k=6),
    dict(temperature=1.5, top_p=0.9),
    dict(temperature=1.2, top_k=8, top_p=0.95, min_p=0.05),
    dict(temperature=0.9, min_p=0.02, repetition_penalty=1.3, presence_penalty=0.4),
]


def freq_case(case: int, V: int = 12):
    """FREQ_CASES[case] on a seeded row of V logits with history [0, 3, 3]: (kw, row, history,
    kept tokens, their reference probabilities); asserts the reference's kept set is sure."""
    kw = FREQ_CASES[case]
    row = np.random.default_rng(100 + case).normal(0, 1.5, V).astype(np.float32)
    history = [0, 3, 3]
    filt = {k: kw[k] for k in ("top_k", "top_p", "min_p") if k in kw}
    pen = {k: kw[k] for k in ("repetition_penalty", "presence_penalty") if k in kw}
    l = ref_process(row, history, **pen)
    sure_kept, sure_dropped = ref_kept(l, **filt)
    assert len(sure_kept) + len(sure_dropped) == V and len(sure_kept) >= 2
    kept, p = ref_probs(l, sure_kept, kw["temperature"])
    return kw, row, history, kept, p


@pytest.mark.parametrize("case", range(len(FREQ_CASES)))
def test_frequencies_match_reference_probabilities(case):
    V, N = 12, 200_000
    kw, row, history, kept, p = freq_case(case, V)
    s = Sampler(V, seed=1234 + case, **kw)
    counts = Counter(s.sample(row, history) for _ in range(N))
    assert set(counts) <= set(kept)
    obs = np.array([counts[t] for t in kept], np.float64)
    expected = N * p
    assert expected.min() >= 5, "case too skewed for a chi-square test"
    stat = float(((obs - expected) ** 2 / expected).sum())
    assert stat < chi2_threshold(len(kept) - 1), (stat, obs, expected)


# ----------------------------------------------------------------------------- seeds


def test_exact_sequence_matches_mt19937_64_reference():
    rng = np.random.default_rng(7)
    V = 50
    for seed in (0, 1, 5489, 2**64 - 1):
        row = rng.normal(0, 2, V).astype(np.float32)
        for kw in (dict(temperature=0.8), dict(temperature=1.3, top_k=20, top_p=0.95, min_p=0.01)):
            filt = {k: kw[k] for k in ("top_k", "top_p", "min_p") if k in kw}
            sure_kept, sure_dropped = ref_kept(row.astype(np.float64), **filt)
            assert len(sure_kept) + len(sure_dropped) == V
            want = ref_sequence(row.astype(np.float64), sure_kept, kw["temperature"], seed, 300)
            s = Sampler(V, seed=seed, **kw)
            assert [s.sample(row, []) for _ in range(300)] == want


def test_same_seed_same_sequence_different_seed_different():
    row = np.random.default_rng(3).normal(0, 1, 100).astype(np.float32)
    seq = lambda s, n=200: [s.sample(row, []) for _ in range(n)]  # noqa: E731
    a, b, c = (Sampler(100, temperature=1.0, seed=sd) for sd in (11, 11, 12))
    sa = seq(a)
    assert sa == seq(b)
    assert sa != seq(c)
    a.reseed(11)
    assert seq(a) == sa
    c.reseed(11)
    assert seq(c) == sa


# ----------------------------------------------------------------------------- validation

BAD = [
    (dict(n_vocab=0), "n_vocab"),
    (dict(n_vocab=-3), "n_vocab"),
    (dict(temperature=math.nan), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_p=math.nan), "top_p"),
    (dict(min_p=-0.1), "min_p"),
    (dict(min_p=1.01), "min_p"),
    (dict(min_p=math.nan), "min_p"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(repetition_penalty=-1.0), "repetition_penalty"),
    (dict(repetition_penalty=math.nan), "repetition_penalty"),
    (dict(repetition_penalty=INF), "repetition_penalty"),
    (dict(frequency_penalty=math.nan), "frequency_penalty"),
    (dict(presence_penalty=INF), "presence_penalty"),
    (dict(penalty_last_n=-2), "penalty_last_n"),
    (dict(logit_bias={10: 1.0}), "logit_bias"),
    (dict(logit_bias={-1: 1.0}), "logit_bias"),
    (dict(logit_bias={2**32 + 1: 1.0}), "logit_bias"),
    (dict(logit_bias={1: math.nan}), "logit_bias"),
    (dict(suppress=[3, 10]), "suppress"),
    (dict(suppress=[-1]), "suppress"),
]


@pytest.mark.parametrize("kw,field", BAD, ids=[f for _, f in BAD])
def test_bad_parameters_raise(kw, field):
    kw = {"n_vocab": 10, **kw}
    with pytest.raises(InputError, match=rf"^\[sampler\] {field}\b"):
        Sampler(**kw)


def test_bad_sample_inputs_raise():
    s = Sampler(10, temperature=1.0, repetition_penalty=1.1)
    row = np.zeros(10, np.float32)
    with pytest.raises(InputError, match=r"^\[sampler\] history\[1\]"):
        s.sample(row, [1, 10])
    with pytest.raises(InputError, match=r"^\[sampler\] history"):
        s.sample(row, [-1])
    with pytest.raises(InputError, match=r"^\[sampler\] logits has 9"):
        s.sample(np.zeros(9, np.float32), [])
    with pytest.raises(InputError, match=r"^\[sampler\] logits must be 1-D"):
        s.sample(np.zeros((2, 5), np.float32), [])
    with pytest.raises(InputError, match=r"^\[sampler\] logit_bias"):
        Sampler(4, temperature=1.0, logit_bias={0: INF}).sample(np.array([-INF, 0, 0, 0], np.float32), [])


# ----------------------------------------------------------------------------- full vocabulary


def test_gemma_vocab_262144():
    V = 262144
    rng = np.random.default_rng(5)
    row = (rng.standard_normal(V) * 3).astype(np.float32)
    row[rng.integers(0, V, 1000)] = -INF
    l = row.astype(np.float64)
    history = rng.integers(0, V, 500).tolist()

    # default penalties (repetition 1, frequency 0, presence 0) change nothing
    assert Sampler(V).sample(row, history) == int(np.argmax(row))

    sure_kept, sure_dropped = ref_kept(l, top_k=50)
    assert len(sure_kept) == 50
    assert draw_set(Sampler(V, temperature=HUGE_T, top_k=50), row, 3000) == sure_kept

    # top-p without top-k: > 4096 candidates, so the cut is found through the logit buckets
    for kw in (dict(top_p=0.9), dict(top_p=0.5, min_p=0.001), dict()):
        filt = {k: kw[k] for k in ("top_p", "min_p") if k in kw}
        sure_kept, sure_dropped = ref_kept(l, **filt)
        assert len(sure_kept) + len(sure_dropped) == V
        assert len(sure_kept) > 256  # more than the first 256-token chunk
        want = ref_sequence(l, sure_kept, 1.0, 99, 30)
        s = Sampler(V, temperature=1.0, seed=99, **kw)
        assert [s.sample(row, []) for _ in range(30)] == want

    # cost: O(V) passes; generous bound for a shared 2-core machine (catches O(V^2) or a
    # sort per call gone wrong, not small regressions)
    for kw in (dict(), dict(top_k=40, top_p=0.95, min_p=0.05), dict(top_p=0.95), dict(min_p=0.05)):
        s = Sampler(V, temperature=1.0, repetition_penalty=1.1, **kw)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            s.sample(row, history)
            times.append(time.perf_counter() - t0)
        assert sorted(times)[2] < 0.25, (kw, times)


@pytest.mark.parametrize("top_p,min_p", [(0.3, 0.0), (0.7, 0.0), (0.95, 0.0), (0.999, 0.0), (0.9, 0.02), (0.5, 1e-4)])
def test_long_candidate_lists_with_ties(top_p, min_p):
    # > 4096 candidates: top-p goes through the logit buckets; logits on a coarse grid put
    # thousands of exact ties (same bucket) at the cut, resolved by lower id first.
    V = 30000
    rng = np.random.default_rng(int(top_p * 1000) + 17)
    row = (-0.25 * rng.integers(0, 40, V)).astype(np.float32)
    row[rng.integers(0, V, 50)] = 1.5
    l = row.astype(np.float64)
    sure_kept, sure_dropped = ref_kept(l, top_p=top_p, min_p=min_p)
    assert len(sure_kept) + len(sure_dropped) == V
    for t in (1.0, HUGE_T):
        want = ref_sequence(l, sure_kept, t, 2024, 200)
        s = Sampler(V, temperature=t, top_p=top_p, min_p=min_p, seed=2024)
        assert [s.sample(row, []) for _ in range(200)] == want


# ----------------------------------------------------------------------------- probs / draw (speculative sampling)


@pytest.mark.parametrize("case", range(len(FREQ_CASES)))
def test_probs_is_the_distribution_sample_draws_from(case):
    """probs() equals the reference distribution of the kept tokens (0 elsewhere)."""
    V = 12
    kw, row, history, kept, p = freq_case(case, V)
    got = Sampler(V, seed=1, **kw).probs(row, history)
    want = np.zeros(V)
    want[kept] = p
    assert np.allclose(got, want, atol=1e-6) and abs(got.sum() - 1) < 1e-5


def test_probs_greedy_is_one_hot_and_draw_follows_weights():
    row = np.array([0.5, 2.0, 2.0, -1.0], np.float32)
    s = Sampler(4, seed=3)
    assert s.probs(row).tolist() == [0.0, 1.0, 0.0, 0.0]   # lowest id among the maxima
    w = np.array([0.0, 1.0, 3.0, 0.0], np.float32)
    s = Sampler(4, temperature=1.0, seed=5)
    counts = Counter(s.draw(w) for _ in range(40_000))
    assert set(counts) == {1, 2} and abs(counts[2] / 40_000 - 0.75) < 0.01
    u = [s.uniform() for _ in range(1000)]
    assert 0.0 <= min(u) and max(u) < 1.0 and abs(np.mean(u) - 0.5) < 0.05
    with pytest.raises(InputError):
        s.draw(np.zeros(4, np.float32))
    with pytest.raises(InputError):
        s.draw(np.array([1, -1, 0, 0], np.float32))
    # same seed, same uniform stream as sample(): a draw consumes exactly one 64-bit number
    a, b = Sampler(4, temperature=1.0, seed=9), MT19937_64(9)
    assert a.uniform() == (b() >> 11) * 2.0**-53
