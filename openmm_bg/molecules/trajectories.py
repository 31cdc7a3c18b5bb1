"""Trajectories in and out with mdtraj, with an atom-by-atom check against the topology.

Positions are plain arrays of shape ``(n_frames, n_atoms, 3)`` in nm.  DCD stores
float32 Angstrom, so a round trip keeps about 7 significant digits; XTC stores
positions rounded to 1e-3 nm by default.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from pathlib import Path

import mdtraj as md
import numpy as np

from .._validation import ensure_count
from ..topology import as_topology

__all__ = [
    "TRAJECTORIES",
    "load_bundled_trajectory",
    "check_same_atoms",
    "hold_out_final",
    "load_trajectory",
    "load_mdtraj",
    "save_trajectory",
    "save_topology",
]

# Formats whose files carry atom names, so their order can be checked.
_SELF_DESCRIBING = (".pdb", ".h5", ".gro", ".mol2", ".cif", ".pdbx")


def _describe(atom: md.core.topology.Atom) -> str:
    element = atom.element.symbol if atom.element is not None else "?"
    return f"{atom.name} ({element}) of {atom.residue.name}{atom.residue.resSeq}"


def check_same_atoms(expected: md.Topology, found: md.Topology, found_label: str = "trajectory") -> None:
    """Raise ``ValueError`` unless ``found`` has the atoms of ``expected`` in the same order.

    Atoms are compared by count, then name, element and residue name, index by index.

    Parameters
    ----------
    expected : mdtraj.Topology
    found : mdtraj.Topology
    found_label : str
        How to call ``found`` in the message.
    """
    if found.n_atoms != expected.n_atoms:
        raise ValueError(f"{found_label} with {found.n_atoms} atoms vs topology with {expected.n_atoms} atoms")
    for a, b in zip(expected.atoms, found.atoms):
        same_element = (a.element is None or b.element is None) or a.element.symbol == b.element.symbol
        if a.name != b.name or a.residue.name != b.residue.name or not same_element:
            raise ValueError(
                f"atom names in a different order: atom {a.index} is {_describe(b)} in the {found_label} "
                f"but {_describe(a)} in the topology"
            )


def hold_out_final(frames, fraction: float):
    """Split a trajectory into its first frames and a held-out final block.

    The final ``round(fraction * n)`` frames are held out: a contiguous block, because
    frames drawn at random would be near copies of their training neighbours.

    Returns
    -------
    kept, held_out : arrays
        ``frames[:n - n_held]`` and ``frames[n - n_held:]``.
    """
    n_held = int(round(fraction * frames.shape[0]))
    cut = frames.shape[0] - n_held
    return frames[:cut], frames[cut:]


def load_mdtraj(path: str | os.PathLike, topology, *, trajectory_topology=None, stride: int = 1) -> md.Trajectory:
    """Read a trajectory and check it against the topology it is meant for.

    The atom count is always checked.  Atom names and their order are checked too
    when the file carries them (PDB, HDF5, GRO, ...), or when ``trajectory_topology``
    names the topology the trajectory was written with (e.g. the PDB saved next to a DCD).

    Parameters
    ----------
    path : path
        DCD, XTC, TRR, NetCDF, HDF5, PDB, ... (any format mdtraj reads).
    topology : mdtraj.Topology, openmm.app.Topology, MolecularSystem or path
        The topology the positions must match.
    trajectory_topology : same kinds as ``topology``, optional
        The topology the file was written with.
    stride : int
        Read every ``stride``-th frame.

    Returns
    -------
    mdtraj.Trajectory
        With ``topology`` as its topology; :func:`load_trajectory` gives only the positions.
    """
    stride = ensure_count(stride, "stride")
    path = Path(path)
    if not path.exists():
        raise OSError(f"trajectory file {path} does not exist")
    expected = as_topology(topology)
    if path.suffix.lower() in _SELF_DESCRIBING:
        traj = md.load(str(path), stride=stride)
        check_same_atoms(expected, traj.topology, f"trajectory {path.name}")
    else:
        with _c_stdout_silenced(), md.open(str(path)) as handle:
            n_atoms = _count_atoms(handle, path)
        if n_atoms != expected.n_atoms:
            raise ValueError(f"trajectory {path.name} with {n_atoms} atoms vs topology with {expected.n_atoms} atoms")
        if trajectory_topology is not None:
            check_same_atoms(expected, as_topology(trajectory_topology), "trajectory's topology")
        with _c_stdout_silenced():
            traj = md.load(str(path), top=expected, stride=stride)
    traj.topology = expected
    return traj


@contextlib.contextmanager
def _c_stdout_silenced():
    """Send the process's stdout (file descriptor 1) to /dev/null for the block.

    mdtraj's DCD plugin prints from C ("dcdplugin) detected standard 32-bit DCD file ...")
    on every read, which Python's ``sys.stdout`` cannot catch.  C's own buffer is flushed
    before fd 1 is restored, so the lines cannot come out later.  Where stdout has no file
    descriptor (captured in a test), nothing is redirected.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is None:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            try:
                yield
            finally:
                try:
                    ctypes.CDLL(None).fflush(None)
                except (OSError, AttributeError):
                    pass
                os.dup2(saved, fd)
    finally:
        os.close(saved)


def load_trajectory(path: str | os.PathLike, topology, *, trajectory_topology=None, stride: int = 1) -> np.ndarray:
    """The positions of a trajectory read and checked by :func:`load_mdtraj` (same parameters).

    Returns
    -------
    ndarray, shape (n_frames, n_atoms, 3), float32, nm
    """
    return load_mdtraj(path, topology, trajectory_topology=trajectory_topology, stride=stride).xyz


def _count_atoms(handle, path: Path) -> int:
    # mdtraj file objects expose the atom count under different names per format.
    for attr in ("n_atoms", "_n_atoms"):
        value = getattr(handle, attr, None)
        if isinstance(value, (int, np.integer)) and value > 0:
            return int(value)
    xyz = handle.read(n_frames=1)
    xyz = xyz[0] if isinstance(xyz, tuple) else xyz
    if np.ndim(xyz) != 3:
        raise ValueError(f"could not read atom coordinates from {path}")
    return int(np.shape(xyz)[1])


def save_trajectory(
    path: str | os.PathLike,
    positions: np.ndarray,
    topology,
    *,
    box_lengths: np.ndarray | None = None,
    time: np.ndarray | None = None,
) -> Path:
    """Write positions with mdtraj; the format follows the suffix (``.dcd``, ``.xtc``, ``.h5``, ``.pdb``...).

    Parameters
    ----------
    path : path
    positions : ndarray, shape (n_frames, n_atoms, 3), nm
    topology : mdtraj.Topology, openmm.app.Topology, MolecularSystem or path
    box_lengths : ndarray, shape (3,) or (n_frames, 3), nm, optional
        Orthorhombic box edges.
    time : ndarray, shape (n_frames,), ps, optional

    Returns
    -------
    Path
    """
    from .collective_variables import as_trajectory

    top = as_topology(topology)
    traj = as_trajectory(positions, top)
    if box_lengths is not None:
        traj.unitcell_lengths = np.broadcast_to(np.asarray(box_lengths, dtype=np.float64), (traj.n_frames, 3)).copy()
        traj.unitcell_angles = np.full((traj.n_frames, 3), 90.0)
    if time is not None:
        traj.time = np.asarray(time, dtype=np.float64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target then rename, so an interrupted write never leaves half a file.
    partial = path.with_name(path.stem + ".partial" + path.suffix)
    traj.save(str(partial), force_overwrite=True)
    os.replace(partial, path)
    return path


def save_topology(path: str | os.PathLike, topology, positions: np.ndarray) -> Path:
    """Write one frame as a PDB file, the topology companion of a DCD or XTC.

    Parameters
    ----------
    path : path, ``.pdb``
    topology : mdtraj.Topology, openmm.app.Topology, MolecularSystem or path
    positions : ndarray, shape (n_atoms, 3), nm

    Returns
    -------
    Path
    """
    if Path(path).suffix.lower() != ".pdb":
        raise ValueError(f"topology files are written as PDB, got {Path(path).name}")
    return save_trajectory(path, np.asarray(positions)[None] if np.ndim(positions) == 2 else positions, topology)


#: ready-made system -> bundled trajectory stem
TRAJECTORIES = {"ala2-vacuum": "ala2-vacuum-300K-md", "dimer-wca": "dimer-wca-closed", "particle-dimer": "particle-dimer-closed"}


def load_bundled_trajectory(system: str = "ala2-vacuum", stride: int = 1) -> np.ndarray:
    """The bundled MD trajectory of a ready-made system, checked against its topology.

    Parameters
    ----------
    system : str
        One of :data:`TRAJECTORIES`.
    stride : int

    Returns
    -------
    ndarray, shape (n_frames, n_atoms, 3), float32, nm
    """
    if system not in TRAJECTORIES:
        raise ValueError(f"no bundled trajectory for {system!r}; bundled: {', '.join(sorted(TRAJECTORIES))}")
    from ..reference.bundled import bundled_path
    from .systems import get_system

    stem = TRAJECTORIES[system]
    return load_trajectory(
        bundled_path(stem + ".dcd"), get_system(system).topology, trajectory_topology=bundled_path(stem + ".pdb"), stride=stride
    )
