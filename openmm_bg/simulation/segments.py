"""Long tempering runs carried across machines and sessions as small committed segments.

A parallel-tempering run (:func:`~openmm_bg.simulation.tempering.run_parallel_tempering`)
keeps everything in NetCDF files that grow by about 2 kB per iteration (positions of every
replica), which is too much to commit and is lost with the machine.  A *segment* keeps only
what the analysis and the continuation need:

* per iteration and thermodynamic state: the potential energy (kJ/mol, float32; about
  1e-5 kJ/mol of rounding, far below what MBAR can resolve) and named collective variables
  (float16, e.g. torsions in radians: 2e-3 rad of rounding near pi, and the sign kept);
* the last configuration at each state (nm), from which the next segment starts;
* its seed, the force evaluations it cost, and the NetCDF file it came from.

Segment ``k`` of repeat ``r`` is ``<folder>/repeat<r>/segment<k>.npz``.  Segment 0 holds
the start (iteration 0) and its propagated iterations; segment ``k > 0`` starts from the
last configurations of segment ``k - 1`` with a fresh seed and holds only its propagated
iterations, so the concatenation of a repeat's segments is one Markov chain per state
ensemble (the replicas' identities are not carried over, which the estimates do not use).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from .tempering import TemperingData, read_parallel_tempering

__all__ = ["SegmentedRepeat", "export_segment", "read_segments", "segment_path", "committed_segments", "check_settings"]


def segment_path(folder: str | Path, repeat: int, segment: int) -> Path:
    """``<folder>/repeat<repeat>/segment<segment>.npz``."""
    return Path(folder) / f"repeat{int(repeat)}" / f"segment{int(segment)}.npz"


def committed_segments(folder: str | Path, repeat: int) -> int:
    """How many consecutive segments ``0, 1, ...`` of ``repeat`` exist in ``folder``."""
    k = 0
    while segment_path(folder, repeat, k).is_file():
        k += 1
    return k


def export_segment(
    storage: str | Path,
    out: str | Path,
    collective_variables: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    *,
    segment: int,
    seed: int,
    force_evaluations_per_iteration: int,
) -> dict:
    """Condense one run's NetCDF storage into a segment file.

    Parameters
    ----------
    storage : path
        The ``.nc`` file of :func:`~openmm_bg.simulation.tempering.run_parallel_tempering`,
        with positions stored at every iteration.
    out : path
        The ``.npz`` to write (replaced).
    collective_variables : mapping of name to callable
        Each maps positions ``(n, n_atoms, 3)`` in nm to ``(n,)`` values.
    segment : int
        0 keeps the starting iteration; later segments drop it (it repeats the end of the
        previous segment).
    seed : int
        The seed the run was started with.
    force_evaluations_per_iteration : int
        Force evaluations of one iteration over all replicas (dynamics, final energies and
        the swap matrix), for the cost.

    Returns
    -------
    dict
        ``iterations`` (propagated) and ``n_stored`` (rows written).
    """
    data = read_parallel_tempering(storage)
    n = min(data.n_iterations, len(data.positions))
    if not np.array_equal(data.checkpoint_iterations[:n], np.arange(n)):
        raise ValueError(f"{storage} must store positions at every iteration (checkpoint_interval=1)")
    data = TemperingData(data.temperatures, data.replica_states[:n], data.reduced_potentials[:n], data.positions[:n],
                         data.checkpoint_iterations[:n], data.steps_per_iteration, data.bias_scales)
    if data.bias_scales is not None:
        raise ValueError("segments hold temperature ladders only; a bias-exchange run has bias scales")
    energy = data.potential_energies()
    xyz = data.by_state(data.positions)  # (n, n_states, n_atoms, 3)
    n_atoms = xyz.shape[2]
    cvs = {name: np.asarray(fn(xyz.reshape(-1, n_atoms, 3)), dtype=np.float64).reshape(n, -1) for name, fn in collective_variables.items()}
    first = 0 if segment == 0 else 1
    arrays = dict(
        temperatures=data.temperatures,
        potential_energy=energy[first:].astype(np.float32),
        final_positions=xyz[-1].astype(np.float32),
        segment=np.int64(segment),
        seed=np.int64(seed),
        iterations=np.int64(n - 1),
        force_evaluations=np.int64((n - 1) * force_evaluations_per_iteration),
        steps_per_iteration=np.int64(data.steps_per_iteration),
        source=np.str_(Path(storage).name),
        cv_names=np.array(sorted(cvs), dtype=np.str_),
    )
    for name, values in cvs.items():
        arrays[f"cv_{name}"] = values[first:].astype(np.float16)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out)
    return dict(iterations=int(n - 1), n_stored=int(n - first))


@dataclass
class SegmentedRepeat:
    """One repeat's segments joined.

    Attributes
    ----------
    temperatures : ndarray, shape (n_states,), K
    potential_energy : float64 ndarray, shape (n_rows, n_states), kJ/mol
        Row 0 is the start of segment 0; then one row per propagated iteration.
    collective_variables : dict of name to float64 ndarray, shape (n_rows, n_states)
    final_positions : ndarray, shape (n_states, n_atoms, 3), nm
        Where the last segment ended.
    iterations : int
        Propagated iterations over all segments.
    force_evaluations : int
    seeds : list of int
        The seed of each segment.
    """

    temperatures: np.ndarray
    potential_energy: np.ndarray
    collective_variables: dict
    final_positions: np.ndarray
    iterations: int
    force_evaluations: int
    seeds: list
    steps_per_iteration: int


def read_segments(folder: str | Path, repeat: int) -> SegmentedRepeat:
    """Join the segments ``0, 1, ...`` of ``repeat`` in ``folder``.

    Raises
    ------
    OSError
        If the repeat has no segment 0.
    ValueError
        If the segments disagree on temperatures or collective variables, or a segment
        file says it is another segment than its name.
    """
    n_segments = committed_segments(folder, repeat)
    if n_segments == 0:
        raise OSError(f"no {segment_path(folder, repeat, 0)}")
    parts = []
    for k in range(n_segments):
        with np.load(segment_path(folder, repeat, k)) as f:
            parts.append({key: f[key] for key in f.files})
        if int(parts[-1]["segment"]) != k:
            raise ValueError(f"{segment_path(folder, repeat, k)} says it is segment {int(parts[-1]['segment'])}")
    names = [str(x) for x in parts[0]["cv_names"]]
    for k, part in enumerate(parts):
        if not np.allclose(part["temperatures"], parts[0]["temperatures"]):
            raise ValueError(f"segment {k} of repeat {repeat} has other temperatures than segment 0")
        if [str(x) for x in part["cv_names"]] != names:
            raise ValueError(f"segment {k} of repeat {repeat} has other collective variables than segment 0")
        if int(part["steps_per_iteration"]) != int(parts[0]["steps_per_iteration"]):
            raise ValueError(f"segment {k} of repeat {repeat} has other steps per iteration than segment 0")
    return SegmentedRepeat(
        temperatures=parts[0]["temperatures"],
        potential_energy=np.concatenate([p["potential_energy"] for p in parts]).astype(np.float64),
        collective_variables={n: np.concatenate([p[f"cv_{n}"] for p in parts]).astype(np.float64) for n in names},
        final_positions=parts[-1]["final_positions"].astype(np.float64),
        iterations=int(sum(int(p["iterations"]) for p in parts)),
        force_evaluations=int(sum(int(p["force_evaluations"]) for p in parts)),
        seeds=[int(p["seed"]) for p in parts],
        steps_per_iteration=int(parts[0]["steps_per_iteration"]),
    )


def check_settings(folder: str | Path, settings: Mapping, keys: list[str]) -> None:
    """Write ``settings.json`` in ``folder``, or check that ``keys`` match the one there."""
    path = Path(folder) / "settings.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        differ = [k for k in keys if stored.get(k) != settings.get(k)]
        if differ:
            raise ValueError(f"{path} was made with other settings: " + ", ".join(f"{k}={stored.get(k)!r} (asked {settings.get(k)!r})" for k in differ))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(settings), indent=1) + "\n")
