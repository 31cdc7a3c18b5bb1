"""The data bundled with the package in ``openmm_bg/data`` (provenance in its README.md).

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

__all__ = ["DATA_DIR", "REFERENCE_STATES", "bundled_path", "load_reference", "load_tempering_samples"]

#: the folder of bundled files, installed with the package (``openmm_bg/data``)
DATA_DIR = Path(__file__).resolve().parent.parent / "data"

#: system -> (state A, state B) of ``<system>-reference.json``, whose ``delta_f_kT`` is ``F_B - F_A``;
#: state definitions over the system's collective variables (:mod:`openmm_bg.molecules.states`)
REFERENCE_STATES: dict[str, tuple[str, str]] = {"ala2-vacuum": ("phi < 0", "phi > 0")}


def bundled_path(filename: str) -> Path:
    """Path of a bundled data file; ``OSError`` naming the available files if it is missing."""
    path = DATA_DIR / filename
    if not path.exists():
        available = sorted(p.name for p in DATA_DIR.glob("*")) if DATA_DIR.exists() else []
        raise OSError(f"bundled data file {filename!r} not found in {DATA_DIR}; available: {', '.join(available) or 'none'}")
    return path


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
