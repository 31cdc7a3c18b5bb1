"""Reference simulations and trajectories.

Langevin MD (:func:`run_md`) and parallel tempering (:func:`run_parallel_tempering`)
with openmmtools, both resumable; trajectories in and out with mdtraj with a check of
atom count and order (:func:`load_trajectory`); reference state free energies with
block-bootstrap errors (:mod:`openmm_bg.data.reference`); the bundled data
(:mod:`openmm_bg.data.bundled`).
"""

from .bundled import TRAJECTORIES, bundled_path, load_bundled_trajectory, load_reference, load_tempering_samples
from .dynamics import checkpoint_path, run_md
from .moves import SeededLangevinMove, derive_seed, repartition_hydrogen_mass
from .tempering import TemperingData, energy_evaluations, read_parallel_tempering, run_parallel_tempering
from .trajectories import as_topology, check_same_atoms, hold_out_final, load_trajectory, save_topology, save_trajectory

__all__ = [
    "TRAJECTORIES",
    "bundled_path",
    "load_bundled_trajectory",
    "load_reference",
    "load_tempering_samples",
    "SeededLangevinMove",
    "TemperingData",
    "as_topology",
    "check_same_atoms",
    "checkpoint_path",
    "derive_seed",
    "energy_evaluations",
    "load_trajectory",
    "read_parallel_tempering",
    "repartition_hydrogen_mass",
    "run_md",
    "run_parallel_tempering",
    "save_topology",
    "save_trajectory",
]
