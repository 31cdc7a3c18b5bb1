"""Reference simulations with openmmtools: Langevin MD, GHMC and HMC, parallel tempering and bias exchange, all resumable."""

from .bias_exchange import dihedral_pair_flattening_force, run_bias_exchange, torsion_flattening_force
from .dynamics import checkpoint_path, run_md
from .hmc import SeededHMCMove
from .langevin import SeededGHMCMove, SeededLangevinMove, derive_seed, repartition_hydrogen_mass
from .segments import export_segment, read_segments
from .tempering import TemperingData, energy_evaluations, read_parallel_tempering, run_parallel_tempering

__all__ = [
    "run_md",
    "checkpoint_path",
    "run_parallel_tempering",
    "read_parallel_tempering",
    "TemperingData",
    "run_bias_exchange",
    "torsion_flattening_force",
    "dihedral_pair_flattening_force",
    "energy_evaluations",
    "SeededLangevinMove",
    "SeededGHMCMove",
    "SeededHMCMove",
    "export_segment",
    "read_segments",
    "derive_seed",
    "repartition_hydrogen_mass",
]
