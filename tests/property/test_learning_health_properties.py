"""Properties of the population stability index: never negative, zero for a sample against itself, and
a function of the values' order only, so a strictly increasing transform of both samples changes nothing."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.learning.health import psi

FAST = settings(max_examples=200, deadline=None)

# Integers scaled to floats: distinct draws stay distinct under the transforms below, so a transform
# cannot merge two values by rounding (a float artefact, not a property of PSI).
samples = st.lists(st.integers(-2000, 2000), min_size=1, max_size=300).map(lambda v: np.asarray(v, float) / 100)
bins = st.integers(2, 20)
increasing = st.sampled_from(
    [
        ("exp", np.exp),
        ("cube", lambda x: x**3 + x),
        ("arctan", np.arctan),
        ("affine", lambda x: 3.0 * x - 7.0),
        ("sinh", np.sinh),
    ]
)


@FAST
@given(samples, samples, bins)
def test_psi_is_never_negative(expected, actual, k):
    assert psi(expected, actual, k) >= 0.0


@FAST
@given(samples, bins)
def test_psi_of_a_sample_against_itself_or_a_reordering_is_zero(x, k):
    assert psi(x, x, k) == 0.0
    assert psi(x, x[::-1], k) == 0.0


@FAST
@given(samples, samples, bins, increasing)
def test_psi_is_invariant_to_a_strictly_increasing_transform_of_both_samples(expected, actual, k, transform):
    _, f = transform
    assert np.isclose(psi(f(expected), f(actual), k), psi(expected, actual, k), rtol=1e-12, atol=0)


@FAST
@given(samples, samples, bins)
def test_psi_ignores_nans_in_either_sample(expected, actual, k):
    padded_e = np.concatenate([expected, [np.nan, np.nan]])
    padded_a = np.concatenate([[np.nan], actual])
    assert psi(padded_e, padded_a, k) == psi(expected, actual, k)
