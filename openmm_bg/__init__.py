"""openmm_bg: Boltzmann generators for OpenMM systems.

The core objects::

    from openmm_bg import BoltzmannGenerator, NormalPrior, Trainer, TrainingConfig
    from openmm_bg.flows import real_nvp
    from openmm_bg.energies import OpenMMEnergy, DoubleWell
"""

import importlib

__version__ = "0.1.0"

# Loaded on first use: OpenMM worker processes import openmm_bg._openmm_worker, and an
# eager import here would make each of them import torch for nothing.
_LAZY = {
    "BoltzmannGenerator": "generator",
    "GeneratorSample": "generator",
    "NormalPrior": "distributions",
    "Schedule": "training",
    "Trainer": "training",
    "TrainingConfig": "training",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'openmm_bg' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
