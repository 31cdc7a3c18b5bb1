"""Reduced energies: the contract, analytic toys and the OpenMM bridge."""

from .base import Energy, as_energy
from .openmm_bridge import EnergyResult, OpenMMEnergy, choose_platform, reduced_energies
from .toy_systems import double_well_system, mueller_brown_system
from .toys import DoubleWell, MuellerBrown
from .workers import WorkerCrashedError, WorkerError, WorkerTimeoutError

__all__ = [
    "Energy",
    "as_energy",
    "DoubleWell",
    "MuellerBrown",
    "OpenMMEnergy",
    "EnergyResult",
    "choose_platform",
    "reduced_energies",
    "double_well_system",
    "mueller_brown_system",
    "WorkerError",
    "WorkerTimeoutError",
    "WorkerCrashedError",
]
