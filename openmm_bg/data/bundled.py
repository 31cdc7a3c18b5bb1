"""The data bundled in the repository's ``data/`` folder (see data/README.md).

Files:

* ``ala2-vacuum-300K-md.dcd`` + ``.pdb``: unbiased Langevin MD of ``ala2-vacuum`` at 300 K, for training by example;
* ``ala2-vacuum-pt.npz``: phi, psi and potential energies from parallel-tempering repeats;
* ``ala2-vacuum-reference.json``: the reference dF(phi > 0 vs phi < 0) at 300 K with its error;
* ``dimer-wca-closed.dcd`` + ``.pdb``: MD of ``dimer-wca`` started in the closed state;
* ``trpzip2-implicit.pdb``: the structure of ``trpzip2-implicit``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..systems import DATA_DIR, get_system
from .trajectories import load_trajectory

__all__ = ["bundled_path", "load_bundled_trajectory", "load_reference", "load_tempering_samples", "TRAJECTORIES"]

#: ready-made system -> bundled trajectory stem
TRAJECTORIES = {"ala2-vacuum": "ala2-vacuum-300K-md", "dimer-wca": "dimer-wca-closed"}


def bundled_path(filename: str) -> Path:
    """Path of a bundled data file; ``OSError`` naming the available files if it is missing."""
    path = DATA_DIR / filename
    if not path.exists():
        available = sorted(p.name for p in DATA_DIR.glob("*")) if DATA_DIR.exists() else []
        raise OSError(f"bundled data file {filename!r} not found in {DATA_DIR}; available: {', '.join(available) or 'none'}")
    return path


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
    stem = TRAJECTORIES[system]
    return load_trajectory(
        bundled_path(stem + ".dcd"), get_system(system).topology, trajectory_topology=bundled_path(stem + ".pdb"), stride=stride
    )


def load_reference(system: str = "ala2-vacuum") -> dict:
    """The reference free-energy record (``delta_f_kT``, ``error_kT``, settings, cost) as a dict."""
    return json.loads(bundled_path(f"{system}-reference.json").read_text())


def load_tempering_samples(system: str = "ala2-vacuum") -> dict[str, np.ndarray]:
    """Parallel-tempering samples, in state order.

    Returns
    -------
    dict
        ``temperatures`` (n_states,) K; ``potential_energy`` (n_repeats, n_iterations, n_states)
        float32 kJ/mol; ``phi``, ``psi`` (n_repeats, n_iterations, n_states) float32 radians;
        ``steps_per_iteration``.  Iteration 0 of each repeat is its starting structure.
    """
    with np.load(bundled_path(f"{system}-pt.npz")) as data:
        return {key: data[key] for key in data.files}
