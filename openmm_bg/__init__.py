"""openmm_bg: Boltzmann generators for OpenMM systems.

The core objects::

    from openmm_bg import BoltzmannGenerator, NormalPrior, Trainer, TrainingConfig
    from openmm_bg.flows import real_nvp
    from openmm_bg.energies import OpenMMEnergy, DoubleWell
"""

from .distributions import NormalPrior
from .generator import BoltzmannGenerator, GeneratorSample
from .training import Schedule, Trainer, TrainingConfig

__version__ = "0.1.0"

__all__ = ["BoltzmannGenerator", "GeneratorSample", "NormalPrior", "Schedule", "Trainer", "TrainingConfig", "__version__"]
