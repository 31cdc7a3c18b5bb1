"""The one conversion of what a user may hold into an :class:`mdtraj.Topology`."""

from __future__ import annotations

import os
from pathlib import Path

import mdtraj as md
import openmm.app as app

__all__ = ["as_topology"]


def as_topology(topology) -> md.Topology:
    """An mdtraj topology from what a user may hold.

    Parameters
    ----------
    topology : mdtraj.Topology, openmm.app.Topology, mdtraj.Trajectory, MolecularSystem, or path
        Anything with an mdtraj ``topology`` attribute counts as a system; a path may be
        a PDB, PDBx/mmCIF, prmtop, GRO, or any file mdtraj can read a topology from.

    Returns
    -------
    mdtraj.Topology
        ``topology`` itself when it already is one.

    Raises
    ------
    OSError
        For a path that does not exist.
    TypeError
        For anything else.
    """
    if isinstance(topology, md.Topology):
        return topology
    if isinstance(topology, app.Topology):
        return md.Topology.from_openmm(topology)
    if isinstance(getattr(topology, "topology", None), md.Topology):
        return topology.topology
    if isinstance(topology, (str, os.PathLike)):
        path = Path(topology)
        if not path.exists():
            raise OSError(f"topology file {path} does not exist")
        return md.load_topology(str(path))
    raise TypeError(
        "topology must be an mdtraj.Topology, an openmm.app.Topology, an mdtraj.Trajectory, "
        f"a MolecularSystem or a file path, got {type(topology).__name__}"
    )
