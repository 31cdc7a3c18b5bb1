"""Invertible layers.  Every layer maps configuration -> latent in ``forward``."""

from .base import Bijection, Inverse, Sequential, check_flat
from .builders import nicer, real_nvp
from .coupling import AdditiveCoupling, AffineCoupling, NICERBlock, RealNVPBlock, half_mask
from .elementwise import ExpScaling, Flatten, Permutation, Scaling, SwapHalves
from .networks import MLP

__all__ = [
    "Bijection",
    "Sequential",
    "Inverse",
    "check_flat",
    "AdditiveCoupling",
    "AffineCoupling",
    "NICERBlock",
    "RealNVPBlock",
    "half_mask",
    "Scaling",
    "ExpScaling",
    "Permutation",
    "SwapHalves",
    "Flatten",
    "MLP",
    "real_nvp",
    "nicer",
]
