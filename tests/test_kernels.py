"""Kernel constants against numerical integration, registry behaviour, backends."""

import math

import numpy as np
import pytest
from scipy import integrate

from kernelvalue._array import to_numpy
from kernelvalue.kernels import KERNELS, Kernel, get_kernel

NAMES = sorted(KERNELS)


def _scalar(kern):
    return lambda u: float(kern(np.asarray([u], dtype=np.float64))[0])


def _quad(g, kern):
    # Split at 0 (kinks of the triangular/exponential kernels) and at the
    # support edges so quad never integrates across a non-smooth point.
    s = kern.support
    if math.isfinite(s):
        pieces = [(-s, 0.0), (0.0, s)]
    else:
        pieces = [(-np.inf, 0.0), (0.0, np.inf)]
    return sum(integrate.quad(g, a, b, epsabs=1e-13, epsrel=1e-13, limit=200)[0] for a, b in pieces)


@pytest.mark.parametrize("name", NAMES)
def test_integrates_to_one(name):
    k = KERNELS[name]
    assert _quad(_scalar(k), k) == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_second_moment_matches_quadrature(name):
    k = KERNELS[name]
    K = _scalar(k)
    assert _quad(lambda u: u * u * K(u), k) == pytest.approx(k.mu2, abs=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_roughness_matches_quadrature(name):
    k = KERNELS[name]
    K = _scalar(k)
    assert _quad(lambda u: K(u) ** 2, k) == pytest.approx(k.roughness, abs=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_k0_is_value_at_zero(name):
    k = KERNELS[name]
    assert float(k(np.zeros(1))[0]) == pytest.approx(k.k0, abs=1e-15)
    # K(0) is the mode of every kernel here.
    u = np.linspace(-3, 3, 601)
    assert np.all(k(u) <= k.k0 + 1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_support_symmetry_and_sign(name):
    k = KERNELS[name]
    u = np.linspace(-5, 5, 2001)
    v = k(u)
    assert np.all(v >= 0)
    np.testing.assert_array_equal(v, k(-u))
    if k.compact:
        assert k.support == 1.0
        outside = np.array([1.0 + 1e-9, 1.5, 10.0, -1.0 - 1e-9, -7.0])
        np.testing.assert_array_equal(k(outside), 0.0)
        inside = np.array([0.0, 0.5, 0.999, -0.999])
        assert np.all(k(inside) > 0)
    else:
        assert math.isinf(k.support)
        assert np.all(k(np.array([5.0, 20.0])) > 0)


@pytest.mark.parametrize("name", NAMES)
def test_canonical_bandwidth(name):
    k = KERNELS[name]
    assert k.canonical_bandwidth() == pytest.approx((k.roughness / k.mu2**2) ** 0.2, rel=1e-14)


def test_registry_has_the_issue_kernels():
    expected = {"triangular", "epanechnikov", "gaussian", "exponential", "uniform", "biweight", "triweight", "tricube"}
    assert expected <= set(KERNELS)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        get_kernel("cosine-ish")
    msg = str(info.value)
    assert "cosine-ish" in msg
    for name in NAMES:
        assert name in msg


def test_bad_type():
    with pytest.raises(TypeError, match="kernel must be"):
        get_kernel(3.0)


@pytest.mark.parametrize(
    "alias, name",
    [("quartic", "biweight"), ("laplace", "exponential"), ("normal", "gaussian"), ("boxcar", "uniform")],
)
def test_aliases(alias, name):
    assert get_kernel(alias) is KERNELS[name]
    assert get_kernel(alias.upper()) is KERNELS[name]


def test_names_case_insensitive_and_objects_pass_through():
    assert get_kernel("Epanechnikov") is KERNELS["epanechnikov"]
    custom = Kernel("half", 1.0, 0.5, 1 / 3, 0.5, lambda a, xp: xp.astype(a <= 1.0, a.dtype) * 0.5)
    assert get_kernel(custom) is custom
    np.testing.assert_array_equal(custom(np.array([-2.0, 0.3, 1.0, 1.5])), [0.0, 0.5, 0.5, 0.0])


def test_compact_kernel_must_vanish_beyond_its_support():
    # The smoothers apply no support mask of their own: a compact profile that
    # is non-zero outside [-support, support] is refused when created.
    with pytest.raises(ValueError, match="must return 0 for"):
        Kernel("leaky", 1.0, 0.5, 1 / 3, 0.5, lambda a, xp: xp.ones_like(a) * 0.5)


@pytest.mark.parametrize("name", NAMES)
def test_kernel_call_leaves_its_input_untouched(name):
    # Profiles may work in place on the |u| or u^2 array they are handed, never on u.
    u = np.linspace(-2.0, 2.0, 9)
    before = u.copy()
    KERNELS[name](u)
    np.testing.assert_array_equal(u, before)


@pytest.mark.parametrize("name", NAMES)
def test_backends_agree_with_numpy(xp, name):
    k = KERNELS[name]
    u_np = np.linspace(-2.5, 2.5, 41)
    ref = k(u_np)
    for dtype, tol in ((xp.float64, 1e-15), (xp.float32, 1e-6)):
        u = xp.asarray(u_np, dtype=dtype)
        out = k(u)
        assert out.dtype == dtype
        assert out.shape == u.shape
        np.testing.assert_allclose(np.asarray(to_numpy(out), dtype=np.float64), ref, rtol=tol, atol=tol)



@pytest.mark.parametrize("name", NAMES)
def test_tail_bound_is_where_the_kernel_becomes_exactly_zero(name):
    # The exact smoothers drop every weight beyond tail_bound(): that is only
    # exact if K is 0.0 there in float64 and positive just inside.
    k = KERNELS[name]
    tau = k.tail_bound()
    if k.compact:
        assert tau == k.support
        return
    beyond = tau * np.array([1 + 1e-12, 1.01, 2.0, 100.0])
    assert np.all(k(beyond) == 0.0) and np.all(k(-beyond) == 0.0)
    assert k(np.array([tau * (1 - 1e-3)]))[0] > 0.0
