"""Smoothing kernels with the constants the asymptotic theory needs.

Every kernel is a symmetric density on the real line: it integrates to 1, so
``mu2`` (second moment) and ``roughness`` (``R(K) = int K^2``) enter the bias and
variance formulas directly. Kernels evaluate on any Array-API array (numpy,
torch, array-api-strict) and return an array of the same namespace, device and
dtype.

Examples
--------
>>> import numpy as np
>>> from kernelvalue.kernels import get_kernel
>>> k = get_kernel("triangular")
>>> k(np.array([0.0, 0.5, 2.0]))
array([1. , 0.5, 0. ])
>>> k.k0, k.mu2, k.support
(1.0, 0.16666666666666666, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from array_api_compat import array_namespace

from ._array import imul

__all__ = ["Kernel", "KERNELS", "get_kernel"]


@dataclass(frozen=True)
class Kernel:
    """A symmetric kernel density ``K(u)``.

    Parameters
    ----------
    name : str
        Registry name.
    support : float
        Half-width of the support: ``K(u) = 0`` for ``|u| > support``
        (``math.inf`` for the Gaussian and exponential kernels).
    k0 : float
        ``K(0)``.
    mu2 : float
        Second moment ``int u^2 K(u) du``.
    roughness : float
        ``R(K) = int K(u)^2 du``.
    profile : callable
        ``profile(a, xp)``: the kernel as a function of ``a = |u|`` (of
        ``a = u**2`` when ``squared``) on the array namespace ``xp``. ``a`` is
        a fresh array that the profile may overwrite (with
        :func:`kernelvalue._array.imul` and friends, which leave autograd-tracked
        tensors alone): the smoothers evaluate millions of weights per
        bandwidth, so every saved temporary counts. For a compact kernel the profile must itself return 0 for
        ``|u| > support``; this is checked when the kernel is created.
    squared : bool
        Whether ``profile`` takes ``u**2`` rather than ``|u|`` (cheaper for
        kernels that are polynomials or exponentials in ``u**2``).
    poly : tuple of float, optional
        Coefficients ``c_k`` with ``K(u) = sum_k c_k |u|^k`` for ``|u| <= 1``
        (``support`` must be 1). Declaring them lets 1-D smoothers use the
        exact fast sums of :mod:`kernelvalue.fastsum`; checked against
        ``profile`` when the kernel is created.
    exp_scale : float, optional
        ``c`` with ``K(u) = c exp(-|u|)`` (the Laplace kernel): fast sums by
        left/right recursions. Checked against ``profile``.
    """

    name: str
    support: float
    k0: float
    mu2: float
    roughness: float
    profile: Callable = field(repr=False, compare=False)
    squared: bool = field(default=False, repr=False, compare=False)
    poly: tuple | None = field(default=None, repr=False, compare=False)
    exp_scale: float | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self._check_closed_form()
        if self.compact:
            beyond = np.array([1.0 + 1e-9, 1.5, 2.0, 10.0]) * self.support
            if np.any(self(beyond) != 0):
                raise ValueError(
                    f"kernel {self.name!r}: profile must return 0 for |u| > support={self.support}; "
                    "clip it (e.g. xp.clip(1 - a, min=0.0)) or set support=math.inf."
                )

    def _check_closed_form(self):
        """The declared polynomial or exponential form must be the profile."""
        if self.poly is None and self.exp_scale is None:
            return
        if self.poly is not None and self.exp_scale is not None:
            raise ValueError(f"kernel {self.name!r}: declare poly or exp_scale, not both.")
        if self.poly is not None:
            if self.support != 1.0:
                raise ValueError(f"kernel {self.name!r}: poly needs support=1, got support={self.support}.")
            a = np.linspace(0.0, 1.0, 23)[:-1]  # the edge itself is the uniform kernel's jump
            form = np.polynomial.polynomial.polyval(a, np.asarray(self.poly, dtype=float))
        else:
            a = np.linspace(0.0, 20.0, 23)
            form = self.exp_scale * np.exp(-a)
        if not np.allclose(self(a), form, rtol=1e-12, atol=0.0):
            what = "poly coefficients" if self.poly is not None else "exp_scale"
            raise ValueError(f"kernel {self.name!r}: the declared {what} do not reproduce its profile.")

    @property
    def compact(self) -> bool:
        """Whether the kernel vanishes outside a bounded interval."""
        return math.isfinite(self.support)

    def __call__(self, u):
        xp = array_namespace(u)
        return self.profile(u * u if self.squared else xp.abs(u), xp)

    def tail_bound(self, rel: float = 0.0) -> float:
        """Smallest ``tau`` with ``K(u) <= rel * K(0)`` for all ``|u| >= tau``.

        ``support`` for a compact kernel. For an unbounded one it is found by
        doubling then bisection (60 steps), assuming ``K`` decreases in
        ``|u|``; ``rel=0`` gives the point beyond which ``K`` underflows to
        exactly 0 in float64 (38.6 for the Gaussian), so the exact smoothers
        can skip those weights without changing a bit of the sums.
        ``math.inf`` if ``K`` is still above the level at ``|u| = 1e6``.

        Examples
        --------
        >>> round(get_kernel("gaussian").tail_bound(1e-12), 2), get_kernel("biweight").tail_bound()
        (7.43, 1.0)
        """
        # Cached on the instance, not by value: kernels compare equal by
        # their constants, whatever their profile.
        cache = self.__dict__.setdefault("_tail_bounds", {})
        if rel not in cache:
            cache[rel] = _tail_bound(self, float(rel))
        return cache[rel]

    def canonical_bandwidth(self) -> float:
        """``delta_0 = (R(K) / mu2^2)^(1/5)``: rescales bandwidths between kernels
        so that they give the same asymptotic MSE (Marron & Nolan, 1988)."""
        return (self.roughness / self.mu2**2) ** 0.2


def _tail_bound(kern: Kernel, rel: float) -> float:
    if kern.compact:
        return float(kern.support)
    target = rel * kern.k0

    def above(a):
        return float(kern(np.array([a]))[0]) > target

    hi = 1.0
    while above(hi):
        hi *= 2.0
        if hi > 1e6:
            return math.inf
    lo = hi / 2.0 if hi > 1.0 else 0.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if above(mid) else (lo, mid)
    return hi


def _power(a, p):
    """``a**p`` for a small integer ``p`` by multiplication (pow() is several times slower)."""
    out = a
    for _ in range(p - 1):
        out = out * a
    return out


def _poly(power_inner, power_outer, const):
    """Profile ``const * (1 - a^p)_+^q`` (``a = |u|``, or ``u^2`` for squared kernels)."""

    def profile(a, xp):
        # Clipping 1 - a^p at 0 zeroes the outside of the support: no
        # separate support mask (two more passes) is needed.
        return imul(_power(xp.clip(1.0 - _power(a, power_inner), min=0.0), power_outer), const)

    return profile


def _gaussian(s, xp):  # s = u^2
    return imul(xp.exp(imul(s, -0.5)), 1.0 / math.sqrt(2.0 * math.pi))


def _exponential(a, xp):
    return imul(xp.exp(imul(a, -1.0)), 0.5)


def _uniform(a, xp):
    return imul(xp.astype(a <= 1.0, a.dtype), 0.5)


def _coefficients(power_inner, power_outer, const):
    """Coefficients of ``const * (1 - a^p)^q`` as a polynomial in ``a = |u|``."""
    inner = np.zeros(power_inner + 1)
    inner[0], inner[-1] = 1.0, -1.0
    return tuple(float(c) for c in const * np.polynomial.polynomial.polypow(inner, power_outer))


def _polykernel(name, k0, mu2, roughness, p, q, squared=False):
    """``const (1 - |u|^p)_+^q`` with its profile and its declared coefficients.

    For squared kernels the profile takes ``u^2``, so ``p`` counts powers of
    ``u^2`` there; the coefficients are always in ``|u|``.
    """
    power_inner = 2 * p if squared else p
    return Kernel(name, 1.0, k0, mu2, roughness, _poly(p, q, k0), squared=squared,
                  poly=_coefficients(power_inner, q, k0))


KERNELS: dict[str, Kernel] = {
    k.name: k
    for k in (
        Kernel("uniform", 1.0, 0.5, 1 / 3, 0.5, _uniform, poly=(0.5,)),
        _polykernel("triangular", 1.0, 1 / 6, 2 / 3, 1, 1),
        _polykernel("epanechnikov", 0.75, 1 / 5, 3 / 5, 1, 1, squared=True),
        _polykernel("biweight", 15 / 16, 1 / 7, 5 / 7, 1, 2, squared=True),
        _polykernel("triweight", 35 / 32, 1 / 9, 350 / 429, 1, 3, squared=True),
        _polykernel("tricube", 70 / 81, 35 / 243, 175 / 247, 3, 3),
        Kernel("gaussian", math.inf, 1 / math.sqrt(2 * math.pi), 1.0, 1 / (2 * math.sqrt(math.pi)), _gaussian,
               squared=True),
        Kernel("exponential", math.inf, 0.5, 2.0, 0.25, _exponential, exp_scale=0.5),
    )
}

_ALIASES = {"quartic": "biweight", "laplace": "exponential", "normal": "gaussian", "boxcar": "uniform"}


def get_kernel(kernel) -> Kernel:
    """Return a :class:`Kernel` from a name or pass a :class:`Kernel` through.

    Raises
    ------
    ValueError
        If ``kernel`` is an unknown name; the message lists the valid names.
    TypeError
        If ``kernel`` is neither a string nor a :class:`Kernel`.

    Examples
    --------
    >>> get_kernel("Quartic").name  # names are case-insensitive; aliases allowed
    'biweight'
    """
    if isinstance(kernel, Kernel):
        return kernel
    if isinstance(kernel, str):
        key = _ALIASES.get(kernel.lower(), kernel.lower())
        if key in KERNELS:
            return KERNELS[key]
        raise ValueError(
            f"kernel={kernel!r} is unknown; choose one of {sorted(KERNELS)} "
            f"(aliases: {sorted(_ALIASES)}) or pass a kernelvalue.kernels.Kernel."
        )
    raise TypeError(f"kernel must be a name or a Kernel, got {type(kernel).__name__}.")
