"""The fixed-point primitive (neuroloom.contract.fixed) against values worked out by hand:
round half up (towards +inf) at exact ties, saturation at both ends, modular wrap; the Python
int and the numpy paths give the same numbers."""

import numpy as np
import pytest

from neuroloom.contract.fixed import mulshift, rnd, sat, smax, smin, wrap

#: (v, s, rnd(v, s)): v / 2**s rounded half up
RND = [(5, 1, 3), (-5, 1, -2), (6, 2, 2), (-6, 2, -1), (7, 2, 2), (-7, 2, -2), (9, 3, 1),
       (-12, 3, -1), (7, 0, 7), (-7, 0, -7), (2**40 + 2**9, 10, 2**30 + 1),
       (-(2**40) - 2**9, 10, -(2**30))]


@pytest.mark.parametrize("v,s,want", RND)
def test_rnd_rounds_half_up(v, s, want):
    assert rnd(v, s) == want
    assert rnd(np.array([v]), s).tolist() == [want]
    assert rnd(np.array([v]), np.array([s])).tolist() == [want]
    assert rnd(v, np.array([s])).tolist() == [want]


def test_rnd_per_element_shifts():
    v = np.array([5, -5, 6, -6, 7])
    s = np.array([1, 1, 2, 2, 0])
    assert rnd(v, s).tolist() == [3, -2, 2, -1, 7]


@pytest.mark.parametrize("v,width,want", [(2**23, 24, 2**23 - 1), (-(2**23) - 1, 24, -(2**23)),
                                          (2**23 - 1, 24, 2**23 - 1), (-(2**23), 24, -(2**23)),
                                          (200, 8, 127), (-200, 8, -128), (5, 8, 5)])
def test_sat(v, width, want):
    assert sat(v, width) == want
    assert sat(np.array([v]), width).tolist() == [want]
    assert (smin(width), smax(width)) == (-(2 ** (width - 1)), 2 ** (width - 1) - 1)


@pytest.mark.parametrize("a,b,s,want", [(300, 300, 4, 5625), (3000, 3000, 4, 32767),
                                        (-3000, 3000, 4, -32768), (3, 5, 1, 8), (-3, 5, 1, -7),
                                        (7, 9, 0, 63), (-1, 1, 1, 0)])
def test_mulshift_is_sat_of_rnd_of_the_product(a, b, s, want):
    assert mulshift(a, b, s, 16) == want
    assert mulshift(np.array([a]), b, s, 16).tolist() == [want]
    assert mulshift(a, np.array([b]), s, 16).tolist() == [want]


@pytest.mark.parametrize("v,want", [(2**31, -(2**31)), (2**32 + 5, 5), (-(2**31) - 1, 2**31 - 1),
                                    (-5, -5), (2**31 - 1, 2**31 - 1), (3 * 2**32 - 7, -7)])
def test_wrap_32(v, want):
    assert wrap(v, 32) == want
    assert wrap(np.array([v]), 32).tolist() == [want]


def test_narrow_integer_arrays_are_widened_before_arithmetic():
    """An int8 array is computed in int64: 127 + 1 and 100 * 100 do not wrap in int8."""
    assert rnd(np.array([127], dtype=np.int8), 1).tolist() == [64]
    assert mulshift(np.array([100], dtype=np.int8), 100, 0, 16).tolist() == [10000]
    assert mulshift(100, np.array([100], dtype=np.int8), 0, 16).tolist() == [10000]
