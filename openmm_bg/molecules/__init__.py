"""Molecules: ready-made and user systems, trajectories, collective variables and states.

Names load on first use, so that a command that only needs a constant (the solvent models
for its ``--help``, say) does not import mdtraj and OpenMM.
"""

from .._lazy import lazy_getattr

_LAZY = {
    "RMSD": "collective_variables",
    "Coordinate": "collective_variables",
    "Dihedral": "collective_variables",
    "Distance": "collective_variables",
    "NativeContacts": "collective_variables",
    "parse_collective_variable": "collective_variables",
    "CONSTRAINTS": "hamiltonian",
    "IMPLICIT_SOLVENT_MODELS": "hamiltonian",
    "load_system": "loading",
    "resolve_system": "loading",
    "standard_collective_variables": "named_cvs",
    "fastest_platform": "platforms",
    "select_platform": "platforms",
    "State": "states",
    "evaluate_states": "states",
    "parse_state": "states",
    "MolecularSystem": "systems",
    "get_system": "systems",
    "list_systems": "systems",
    "TRAJECTORIES": "trajectories",
    "check_same_atoms": "trajectories",
    "hold_out_final": "trajectories",
    "load_bundled_trajectory": "trajectories",
    "load_mdtraj": "trajectories",
    "load_trajectory": "trajectories",
    "save_topology": "trajectories",
    "save_trajectory": "trajectories",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__():
    return sorted(__all__)
