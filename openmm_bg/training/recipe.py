"""The molecular training recipe: a Boltzmann generator for one molecule from MD frames.

Noé, Olsson, Köhler & Wu, Science 365, eaaw1147 (2019): the generator (internal
coordinates, their normalisation fitted to the data, a coupling flow and a Gaussian
prior, :func:`openmm_bg.generator.recipes.molecular_generator_from_data`) is trained
by example on MD frames, then by example and energy.  The final block of each
trajectory file is held out and scored during training, which shows over-fitting.

Every run is reproducible from its seed: the network's initial weights are drawn
from a ``torch.Generator`` seeded with ``seed`` (:func:`seeded_parameters`), each
stage's batches from its :class:`~openmm_bg.training.trainer.TrainingConfig` seed,
and torch's global generator is neither read nor changed.
``openmm-bg train`` and ``openmm-bg demo`` both run this recipe.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .._validation import ensure_count
from .trainer import Schedule, Trainer, TrainingConfig

if TYPE_CHECKING:
    from ..generator.model import BoltzmannGenerator
    from ..molecules.systems import MolecularSystem

__all__ = ["MOLECULAR_BUILDER", "TrainingFrames", "check_fraction", "MolecularTraining", "load_training_frames", "seeded_parameters", "train_molecular_generator"]

#: the builder a molecular checkpoint names, so that it reloads without the training data
MOLECULAR_BUILDER = "openmm_bg.generator.recipes.molecular_generator"


@dataclass
class TrainingFrames:
    """Training and held-out frames, positions in nm.

    Attributes
    ----------
    positions : ndarray, shape (n_frames, n_atoms, 3)
        Frames trained on (float64).
    validation : ndarray, shape (n_validation, n_atoms, 3)
        The final block of each file, never trained on (float64; may be empty).
    frames : dict of str to int
        Frames trained on from each file (by file name).
    """

    positions: np.ndarray
    validation: np.ndarray
    frames: dict[str, int]


def check_fraction(value, name: str) -> float:
    """``value`` as a float in [0, 1) (a fraction of frames held out), or a ``ValueError`` naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating, np.integer)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def load_training_frames(
    molecule: "MolecularSystem",
    files: Sequence[tuple[str | os.PathLike, int]],
    validation_fraction: float = 0.0,
    trajectory_topology: str | os.PathLike | None = None,
) -> TrainingFrames:
    """Read trajectory files and hold out the final ``validation_fraction`` of each.

    Parameters
    ----------
    molecule : MolecularSystem
        The files must match its atoms.
    files : sequence of (path, stride)
        Trajectories (DCD, XTC, ...) and the stride to read each with (every n-th frame).
    validation_fraction : float in [0, 1)
        Fraction of each file's frames held out at its end.
    trajectory_topology : path, optional
        Topology the files were written with, checked atom by atom against the molecule's.

    Returns
    -------
    TrainingFrames
    """
    from ..molecules.trajectories import hold_out_final, load_trajectory

    validation_fraction = check_fraction(validation_fraction, "validation_fraction")
    if not files:
        raise ValueError("give at least one trajectory file")
    kept, held, frames = [], [], {}
    for path, stride in files:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"trajectory not found: {path}")
        chunk = load_trajectory(path, molecule.topology, trajectory_topology=trajectory_topology, stride=ensure_count(stride, "stride"))
        train, validation = hold_out_final(chunk, validation_fraction)
        kept.append(train)
        held.append(validation)
        frames[path.name] = frames.get(path.name, 0) + int(train.shape[0])
    positions = np.concatenate(kept).astype(np.float64)
    validation = np.concatenate(held).astype(np.float64)
    if positions.shape[0] < 2:
        raise ValueError(
            f"holding out the final {validation_fraction:g} of each file leaves {positions.shape[0]} frames to train on "
            f"(and {validation.shape[0]} held out); lower the validation fraction or the stride"
        )
    return TrainingFrames(positions, validation, frames)


def seeded_parameters(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``build()``, with every linear layer's initial weights drawn from a generator seeded with ``seed``.

    The layers are drawn as :class:`torch.nn.Linear` draws them (uniform, bound
    ``1/sqrt(fan_in)``), in module order, from ``torch.Generator().manual_seed(seed)``;
    layers the builder set to zero (the output layers that start a coupling as the
    identity) stay zero.  ``build`` runs under :func:`torch.random.fork_rng`, so torch's
    global generator is left as it was, and the weights depend on ``seed`` alone.
    """
    seed = ensure_count(seed, "seed", 0)
    with torch.random.fork_rng(devices=[]):
        module = build()
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Linear) and bool(layer.weight.any()):
                bound = 1.0 / math.sqrt(layer.in_features)
                # nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) is uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))
                layer.weight.copy_(torch.empty(layer.weight.shape, dtype=torch.float64).uniform_(-bound, bound, generator=rng))
                if layer.bias is not None:
                    layer.bias.copy_(torch.empty(layer.bias.shape, dtype=torch.float64).uniform_(-bound, bound, generator=rng))
    return module


@dataclass
class MolecularTraining:
    """A generator trained by :func:`train_molecular_generator`.

    Attributes
    ----------
    generator : BoltzmannGenerator
    builder_kwargs : dict
        Keywords that rebuild its architecture (see :data:`MOLECULAR_BUILDER`).
    trainers : list of Trainer
        One per stage run, with its history and energy evaluations.
    n_frames, n_validation_frames : int
        Frames trained on and held out.
    wall_time_s : list of float
        Seconds of each stage.
    """

    generator: "BoltzmannGenerator"
    builder_kwargs: dict
    trainers: list = field(default_factory=list)
    n_frames: int = 0
    n_validation_frames: int = 0
    wall_time_s: list = field(default_factory=list)

    @property
    def energy_evaluations(self) -> int:
        """Energy evaluations of all stages."""
        return sum(trainer.energy_evaluations for trainer in self.trainers)

    def save(self, path: str | os.PathLike, molecule: "MolecularSystem", metadata: dict | None = None) -> Path:
        """Write the generator checkpoint with the system, temperature, frames, settings and evaluations, plus ``metadata``.

        The checkpoint carries the molecule itself (``metadata["molecule"]``, see
        :func:`openmm_bg.molecules.loading.checkpoint_record`): it samples without the files it was trained on.
        """
        from ..generator.checkpoints import save_generator
        from ..molecules.loading import checkpoint_metadata

        record = {
            **checkpoint_metadata(molecule), "n_frames": self.n_frames, "n_validation_frames": self.n_validation_frames,
            "training": [trainer.config.to_dict() for trainer in self.trainers], "energy_evaluations": self.energy_evaluations,
            **(metadata or {}),
        }
        return save_generator(self.generator, path, MOLECULAR_BUILDER, self.builder_kwargs, record)


def train_molecular_generator(
    molecule: "MolecularSystem",
    frames: TrainingFrames,
    stages: Sequence[TrainingConfig],
    *,
    seed: int,
    architecture: dict | None = None,
    progress: bool = True,
    announce: Callable[[str], None] | None = None,
) -> MolecularTraining:
    """Build a generator for ``molecule`` on ``frames`` and train it stage after stage.

    Parameters
    ----------
    molecule : MolecularSystem
        Its System (constraints held fixed), temperature and platform give the energy.
    frames : TrainingFrames
        From :func:`load_training_frames`; the held-out frames are scored during training.
    stages : sequence of TrainingConfig
        Run in order on the same generator (e.g. by example, then by example and energy).
    seed : int
        Seed of the network's initial weights (:func:`seeded_parameters`).
    architecture : dict, optional
        Keywords of :func:`openmm_bg.generator.recipes.molecular_generator` (``n_blocks``, ``hidden``, ``coupling``, ...).
    progress : bool
        Show progress bars.
    announce : callable, optional
        Called with a line before each stage.

    Returns
    -------
    MolecularTraining
    """
    from ..energies import OpenMMEnergy
    from ..generator.recipes import molecular_generator_from_data

    if not stages:
        raise ValueError("give at least one training stage")
    energy = OpenMMEnergy(molecule.system, molecule.temperature, platform=molecule.platform)
    built = {}

    def build():
        built["generator"], built["kwargs"] = molecular_generator_from_data(
            molecule.topology, frames.positions, energy, system=molecule.system, **(architecture or {})
        )
        return built["generator"]

    generator = seeded_parameters(build, seed)
    result = MolecularTraining(generator, built["kwargs"], n_frames=int(frames.positions.shape[0]), n_validation_frames=int(frames.validation.shape[0]))
    data = torch.as_tensor(frames.positions, dtype=torch.float64)
    validation = torch.as_tensor(frames.validation, dtype=torch.float64) if frames.validation.shape[0] else None
    for number, config in enumerate(stages, 1):
        if announce is not None:
            what = "by example and energy" if Schedule(config.w_kl).ever_positive else "by example"
            announce(f"training stage {number} of {len(stages)} ({what}): {config.n_iterations} iterations")
        start = time.perf_counter()
        trainer = Trainer(generator, config, data=data, validation_data=validation)
        trainer.train(progress=progress)
        result.trainers.append(trainer)
        result.wall_time_s.append(time.perf_counter() - start)
    return result
