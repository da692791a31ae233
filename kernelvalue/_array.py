"""Array-API plumbing shared by the library: "everything follows X".

Results and fitted state live on the namespace, device and floating dtype of
the caller's input. Integer or boolean inputs are promoted to float64 (float32
on backends without float64, e.g. Apple MPS).
"""

from __future__ import annotations

import operator

import numpy as np
from array_api_compat import array_namespace, device, is_numpy_array, is_torch_array, to_device

__all__ = [
    "array_namespace", "device", "float_dtype", "as_float", "is_numpy_array", "to_numpy", "like", "iadd", "imul", "idiv",
]


def float_dtype(x, xp):
    """The floating dtype results take for input ``x``."""
    if xp.isdtype(x.dtype, "real floating"):
        return x.dtype
    return xp.float64


def as_float(x, xp=None):
    """``x`` as a floating array on its own namespace and device."""
    xp = array_namespace(x) if xp is None else xp
    x = xp.asarray(x)
    return xp.astype(x, float_dtype(x, xp), copy=False)


def to_numpy(x) -> np.ndarray:
    """A numpy copy (or view) of any Array-API array, including CUDA tensors."""
    if is_numpy_array(x):
        return x
    if is_torch_array(x):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except (RuntimeError, TypeError, ValueError):  # e.g. array-api-strict arrays on a non-default device
        xp = array_namespace(x)
        return np.asarray(to_device(x, xp.__array_namespace_info__().default_device()))


def like(values, ref, dtype=None):
    """``values`` (numpy or Python scalars) moved to ``ref``'s namespace and device.

    ``dtype`` defaults to ``ref``'s floating dtype.
    """
    xp = array_namespace(ref)
    dtype = float_dtype(ref, xp) if dtype is None else dtype
    out = xp.asarray(np.asarray(values), dtype=dtype) if not is_numpy_array(ref) else np.asarray(values, dtype=dtype)
    return to_device(out, device(ref)) if not is_numpy_array(ref) else out


# In-place updates for the hot loops (a fresh (m, n) temporary per operation
# costs more than the arithmetic). Arrays tracked by autograd (torch tensors
# with requires_grad) get an out-of-place result instead: updating them in
# place would corrupt the values their backward pass saved.
def _tracked(a):
    return bool(getattr(a, "requires_grad", False))


def iadd(a, b):
    """``a + b``, written into ``a`` unless autograd tracks it."""
    return a + b if _tracked(a) else operator.iadd(a, b)


def imul(a, b):
    """``a * b``, written into ``a`` unless autograd tracks it."""
    return a * b if _tracked(a) else operator.imul(a, b)


def idiv(a, b):
    """``a / b``, written into ``a`` unless autograd tracks it."""
    return a / b if _tracked(a) else operator.itruediv(a, b)
