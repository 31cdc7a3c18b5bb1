"""Training: the losses, the trainer (by example, by energy, along a reaction coordinate), the molecular recipe and adaptive exploration.

:mod:`openmm_bg.training.plots` (the loss curves) is imported on its own.
"""

from .exploration import ExplorationResult, ExplorationSettings, explore
from .losses import KLTerm, kl_loss, linlog_cut, ml_loss, rc_loss
from .recipe import MolecularTraining, TrainingFrames, load_training_frames, seeded_parameters, train_molecular_generator
from .trainer import Schedule, Trainer, TrainingConfig

__all__ = [
    "Schedule",
    "TrainingConfig",
    "Trainer",
    "KLTerm",
    "linlog_cut",
    "ml_loss",
    "kl_loss",
    "rc_loss",
    "ExplorationSettings",
    "ExplorationResult",
    "explore",
    "TrainingFrames",
    "MolecularTraining",
    "load_training_frames",
    "seeded_parameters",
    "train_molecular_generator",
]
