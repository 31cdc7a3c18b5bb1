"""Reduced energies: the contract, analytic toys and the OpenMM bridge.

Names load on first use: the OpenMM worker processes import
:mod:`openmm_bg.energies._worker`, and an eager import here would make each of them
import torch for nothing.
"""

import importlib

_LAZY = {
    "Energy": "base",
    "as_energy": "base",
    "DoubleWell": "toys",
    "MuellerBrown": "toys",
    "OpenMMEnergy": "openmm_bridge",
    "EnergyResult": "openmm_bridge",
    "choose_platform": "openmm_bridge",
    "reduced_energies": "openmm_bridge",
    "double_well_system": "toy_systems",
    "mueller_brown_system": "toy_systems",
    "WorkerError": "workers",
    "WorkerTimeoutError": "workers",
    "WorkerCrashedError": "workers",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'openmm_bg.energies' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
