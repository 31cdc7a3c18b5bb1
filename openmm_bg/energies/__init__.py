"""Reduced energies: the contract, analytic toys and the OpenMM bridge.

Names load on first use: the OpenMM worker processes import
:mod:`openmm_bg.energies._worker`, and an eager import here would make each of them
import torch for nothing.
"""

from .._lazy import lazy_getattr

_LAZY = {
    "Energy": "base",
    "as_energy": "base",
    "DoubleWell": "toys",
    "MuellerBrown": "toys",
    "OpenMMEnergy": "openmm_bridge",
    "EnergyResult": "openmm_bridge",
    "choose_platform": "openmm_bridge",
    "reduced_energies": "openmm_bridge",
    "ParticleDimer": "particle_dimer",
    "particle_dimer_system": "particle_dimer",
    "HarmonicPairInBox": "harmonic_pair",
    "HarmonicPairTransform": "harmonic_pair",
    "double_well_system": "toy_systems",
    "mueller_brown_system": "toy_systems",
    "WorkerError": "workers",
    "WorkerTimeoutError": "workers",
    "WorkerCrashedError": "workers",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__():
    return sorted(__all__)
