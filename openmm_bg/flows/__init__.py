"""Invertible layers.  Every layer maps configuration -> latent in ``forward``."""

from .base import Bijection, Inverse, Sequential, check_flat
from .builders import neural_spline, nicer, real_nvp
from .circular import CircularSplineCoupling, circular_spline, stratified_masks, wrap_turn
from .coupling import AdditiveCoupling, AffineCoupling, NICERBlock, RealNVPBlock, half_mask
from .elementwise import ExpScaling, Flatten, Permutation, Scaling, SwapHalves
from .spline import SplineCoupling, rational_quadratic_spline
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
    "SplineCoupling",
    "CircularSplineCoupling",
    "circular_spline",
    "stratified_masks",
    "wrap_turn",
    "rational_quadratic_spline",
    "half_mask",
    "Scaling",
    "ExpScaling",
    "Permutation",
    "SwapHalves",
    "Flatten",
    "MLP",
    "real_nvp",
    "neural_spline",
    "nicer",
]
