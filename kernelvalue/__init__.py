"""kernelvalue: kernel-smoothed value and advantage estimation for RL on language models."""

from .kernels import KERNELS, Kernel, get_kernel

__version__ = "0.1.0"

__all__ = ["KERNELS", "Kernel", "get_kernel", "__version__"]
