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

from array_api_compat import array_namespace

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
        ``profile(abs_u, xp)``: the kernel as a function of ``|u|`` on the
        array namespace ``xp``; the support cut is applied by :meth:`__call__`.
    """

    name: str
    support: float
    k0: float
    mu2: float
    roughness: float
    profile: Callable = field(repr=False, compare=False)

    @property
    def compact(self) -> bool:
        """Whether the kernel vanishes outside a bounded interval."""
        return math.isfinite(self.support)

    def __call__(self, u):
        xp = array_namespace(u)
        a = xp.abs(u)
        values = self.profile(a, xp)
        if self.compact:
            values = xp.where(a <= self.support, values, xp.zeros_like(values))
        return values

    def canonical_bandwidth(self) -> float:
        """``delta_0 = (R(K) / mu2^2)^(1/5)``: rescales bandwidths between kernels
        so that they give the same asymptotic MSE (Marron & Nolan, 1988)."""
        return (self.roughness / self.mu2**2) ** 0.2


def _poly(a, xp, power_inner, power_outer, const):
    # (1 - |u|^p)^q scaled to integrate to one; clip keeps the base >= 0 where
    # the support mask would otherwise be the only guard against odd powers.
    base = 1.0 - a**power_inner
    base = xp.where(base > 0, base, xp.zeros_like(base))
    return const * base**power_outer


KERNELS: dict[str, Kernel] = {
    k.name: k
    for k in (
        Kernel("uniform", 1.0, 0.5, 1 / 3, 0.5, lambda a, xp: xp.ones_like(a) * 0.5),
        Kernel("triangular", 1.0, 1.0, 1 / 6, 2 / 3, lambda a, xp: _poly(a, xp, 1, 1, 1.0)),
        Kernel("epanechnikov", 1.0, 0.75, 1 / 5, 3 / 5, lambda a, xp: _poly(a, xp, 2, 1, 0.75)),
        Kernel("biweight", 1.0, 15 / 16, 1 / 7, 5 / 7, lambda a, xp: _poly(a, xp, 2, 2, 15 / 16)),
        Kernel("triweight", 1.0, 35 / 32, 1 / 9, 350 / 429, lambda a, xp: _poly(a, xp, 2, 3, 35 / 32)),
        Kernel("tricube", 1.0, 70 / 81, 35 / 243, 175 / 247, lambda a, xp: _poly(a, xp, 3, 3, 70 / 81)),
        Kernel(
            "gaussian",
            math.inf,
            1 / math.sqrt(2 * math.pi),
            1.0,
            1 / (2 * math.sqrt(math.pi)),
            lambda a, xp: xp.exp(-0.5 * a * a) / math.sqrt(2 * math.pi),
        ),
        Kernel("exponential", math.inf, 0.5, 2.0, 0.25, lambda a, xp: 0.5 * xp.exp(-a)),
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
