"""Reduced energies: the contract, analytic toys and the OpenMM bridge."""

from .base import Energy, as_energy
from .toys import DoubleWell, MuellerBrown

__all__ = ["Energy", "as_energy", "DoubleWell", "MuellerBrown"]
