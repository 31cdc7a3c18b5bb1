"""The Boltzmann generator: a prior, a flow and a target energy; the recipes that build one; checkpoints."""

from .checkpoints import CHECKPOINT_FORMAT, load_generator, read_torch_file, save_generator
from .model import BoltzmannGenerator, GeneratorSample, check_finite
from .prior import NormalPrior
from .recipes import molecular_generator, molecular_generator_from_data, realnvp_generator

__all__ = [
    "BoltzmannGenerator",
    "GeneratorSample",
    "NormalPrior",
    "check_finite",
    "save_generator",
    "load_generator",
    "read_torch_file",
    "CHECKPOINT_FORMAT",
    "realnvp_generator",
    "molecular_generator",
    "molecular_generator_from_data",
]
