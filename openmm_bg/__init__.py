"""openmm_bg: Boltzmann generators for OpenMM systems.

The core objects::

    from openmm_bg import BoltzmannGenerator, NormalPrior, Trainer, TrainingConfig
    from openmm_bg.flows import real_nvp
    from openmm_bg.energies import OpenMMEnergy, DoubleWell
"""

from ._lazy import lazy_getattr

__version__ = "0.2.0"

# Loaded on first use: OpenMM worker processes import openmm_bg.energies._worker, and an
# eager import here would make each of them import torch for nothing.
_LAZY = {
    "BoltzmannGenerator": "generator.model",
    "GeneratorSample": "generator.model",
    "NormalPrior": "generator.prior",
    "Schedule": "training.trainer",
    "Trainer": "training.trainer",
    "TrainingConfig": "training.trainer",
}

__all__ = [*_LAZY, "__version__"]


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__():
    return sorted(__all__)
