"""Molecules: ready-made and user systems, trajectories, collective variables and states."""

from .collective_variables import RMSD, Coordinate, Dihedral, Distance, NativeContacts, parse_collective_variable
from .hamiltonian import CONSTRAINTS, IMPLICIT_SOLVENT_MODELS
from .loading import load_system, resolve_system
from .named_cvs import standard_collective_variables
from .states import State, evaluate_states, parse_state
from .systems import MolecularSystem, get_system, list_systems
from .trajectories import (
    TRAJECTORIES,
    check_same_atoms,
    hold_out_final,
    load_bundled_trajectory,
    load_mdtraj,
    load_trajectory,
    save_topology,
    save_trajectory,
)

__all__ = [
    "MolecularSystem",
    "get_system",
    "list_systems",
    "load_system",
    "resolve_system",
    "IMPLICIT_SOLVENT_MODELS",
    "CONSTRAINTS",
    "standard_collective_variables",
    "TRAJECTORIES",
    "load_trajectory",
    "load_mdtraj",
    "load_bundled_trajectory",
    "save_trajectory",
    "save_topology",
    "check_same_atoms",
    "hold_out_final",
    "Dihedral",
    "Distance",
    "RMSD",
    "NativeContacts",
    "Coordinate",
    "State",
    "parse_state",
    "evaluate_states",
    "parse_collective_variable",
]
