"""Worker side of the OpenMM energy bridge: one Context per worker, evaluated on batches.

This module imports only numpy and openmm (never torch), and lives outside
:mod:`openmm_bg.energies` because importing anything in that package runs its
``__init__``, which imports torch.  A ``spawn`` worker that unpickles
:func:`evaluate_task` then pays only for what ``openmm_bg/__init__.py``
imports: if that stays free of torch, a worker starts in about half a second
instead of several.  The parent side (the pool, timeouts, errors) is
:mod:`openmm_bg.energies.workers`.

Each worker process keeps its evaluators in a module-level cache keyed by a
token, so the System XML crosses the process boundary once per worker and later
tasks carry only positions.  A task whose worker has not seen the token yet
returns ``None`` and the parent resubmits it with the :class:`ContextSpec`; a
local pool preloads the spec with :func:`install_specs` so that it never needs
that second round trip.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from typing import NamedTuple

import numpy as np
import openmm

from ..units import read_energy_forces

__all__ = ["ContextSpec", "SharedChunk", "ChunkResult", "ContextEvaluator", "evaluate_task", "install_specs"]

#: evaluators kept per worker process; a shared dask worker may serve several energies
_MAX_CACHED_CONTEXTS = 8
#: shared-memory blocks kept mapped per worker process (a pool replaces its block when a batch outgrows it)
_MAX_ATTACHED_BLOCKS = 4


@dataclass(frozen=True)
class ContextSpec:
    """Everything a worker needs to build its Context.

    Attributes
    ----------
    system_xml : str
        The System, serialized by ``openmm.XmlSerializer``; its default box
        vectors are the box of every evaluation.
    platform : str
        OpenMM platform name (``"Reference"``, ``"CPU"``, ``"CUDA"``, ``"OpenCL"``).
    properties : dict of str -> str
        Platform properties, e.g. ``{"Threads": "1"}``.
    """

    system_xml: str
    platform: str
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SharedChunk:
    """Rows ``start:stop`` of a batch that lives in a shared-memory block.

    The block holds a float64 array of shape ``(2, batch, n_atoms, 3)``: index 0
    the positions in nm (written by the parent), index 1 the forces in kJ/mol/nm
    (written by the worker).  A local pool uses it so that a call moves a few
    hundred bytes through its pipes instead of pickling every position and force.

    Attributes
    ----------
    name : str
        Name of the :class:`multiprocessing.shared_memory.SharedMemory` block.
    batch, n_atoms : int
        Shape of the whole batch in the block.
    start, stop : int
        This chunk's rows.
    """

    name: str
    batch: int
    n_atoms: int
    start: int
    stop: int


class ChunkResult(NamedTuple):
    """What a worker sends back for one chunk of positions.

    Attributes
    ----------
    energies : ndarray, shape (batch,), float64, kJ/mol
        ``+inf`` where the sample is not finite.
    forces : ndarray, shape (batch, n_atoms, 3), float64, kJ/mol/nm, or None
        ``NaN`` where the sample is not finite.  None when the forces were
        written into a :class:`SharedChunk`'s block instead.
    finite : ndarray, shape (batch,), bool
        True where the positions, the energy and every force component were finite.
    pid : int
        Process id of the worker that evaluated the chunk.
    built : bool
        True if the worker built its Context for this chunk.
    seconds : float
        Wall time the worker spent evaluating (building excluded), to tell compute from transport.
    """

    energies: np.ndarray
    forces: np.ndarray | None
    finite: np.ndarray
    pid: int
    built: bool
    seconds: float


class ContextEvaluator:
    """One OpenMM Context that evaluates energies and forces of batches of positions.

    Parameters
    ----------
    system : openmm.System
        Copied into the Context; later changes to ``system`` are not seen.
    platform : str
        OpenMM platform name.
    properties : dict of str -> str, optional
        Platform properties.
    """

    def __init__(self, system: openmm.System, platform: str, properties: dict[str, str] | None = None):
        self.n_atoms = system.getNumParticles()
        self.platform = platform
        # The integrator is never stepped; a Context cannot exist without one.
        self._integrator = openmm.VerletIntegrator(0.001)
        self.context = openmm.Context(system, self._integrator, openmm.Platform.getPlatformByName(platform), dict(properties or {}))
        # Evaluations on one Context must not interleave (dask runs tasks in threads).
        self.lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: ContextSpec) -> "ContextEvaluator":
        """Build an evaluator from a :class:`ContextSpec`."""
        return cls(openmm.XmlSerializer.deserialize(spec.system_xml), spec.platform, spec.properties)

    def evaluate(self, positions: np.ndarray, forces_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Energies and forces of a batch of configurations.

        A sample whose positions are not finite is not sent to OpenMM.  A sample
        on which OpenMM raises, or returns a non-finite energy or force, gets
        ``+inf`` energy, ``NaN`` forces and ``finite=False``; the others are untouched.

        Parameters
        ----------
        positions : ndarray, shape (batch, n_atoms, 3), float64, nm
        forces_out : ndarray, shape (batch, n_atoms, 3), float64, optional
            Where to write the forces (e.g. shared memory); returned as ``forces``.

        Returns
        -------
        energies : ndarray, shape (batch,), float64, kJ/mol
        forces : ndarray, shape (batch, n_atoms, 3), float64, kJ/mol/nm
        finite : ndarray, shape (batch,), bool
        """
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        if positions.ndim != 3 or positions.shape[1:] != (self.n_atoms, 3):
            raise ValueError(f"positions must have shape (batch, {self.n_atoms}, 3), got {positions.shape}")
        batch = positions.shape[0]
        energies = np.full(batch, np.inf)
        # rows of failed samples are set to NaN below, so no fill is needed here
        forces = np.empty(positions.shape) if forces_out is None else forces_out
        if forces.shape != positions.shape or forces.dtype != np.float64:
            raise ValueError(f"forces_out must be float64 of shape {positions.shape}, got {forces.dtype} {forces.shape}")
        finite = np.isfinite(positions).all(axis=(1, 2))
        context = self.context
        with self.lock:
            for i in np.flatnonzero(finite):
                try:
                    context.setPositions(positions[i])
                    state = context.getState(getEnergy=True, getForces=True)
                except openmm.OpenMMException:
                    # e.g. "Particle coordinate is NaN" after a blow-up: a failed sample, not a failed batch
                    finite[i] = False
                    continue
                energies[i] = read_energy_forces(state, forces[i])
        finite &= np.isfinite(energies) & np.isfinite(forces).all(axis=(1, 2))
        energies[~finite] = np.inf
        forces[~finite] = np.nan
        return energies, forces, finite


_evaluators: "OrderedDict[str, ContextEvaluator]" = OrderedDict()
_blocks: "OrderedDict[str, shared_memory.SharedMemory]" = OrderedDict()
_specs: dict[str, ContextSpec] = {}
_cache_lock = threading.Lock()


def install_specs(specs: dict[str, ContextSpec]) -> None:
    """Process initializer: remember specs so the first task needs no round trip.

    Parameters
    ----------
    specs : dict of token -> ContextSpec
    """
    _specs.update(specs)


def evaluate_task(token: str, positions: np.ndarray | SharedChunk, spec: ContextSpec | None = None) -> ChunkResult | None:
    """Evaluate one chunk of positions in a worker.

    Parameters
    ----------
    token : str
        Identifies the Context (one per :class:`~openmm_bg.energies.OpenMMEnergy`).
    positions : ndarray, shape (batch, n_atoms, 3), float64, nm; or SharedChunk
        The positions themselves, or where to find them (and where to put the
        forces) in shared memory on this machine.
    spec : ContextSpec, optional
        Sent only when this worker may not know ``token`` yet.

    Returns
    -------
    ChunkResult, or None
        ``None`` means this worker has no Context and no spec for ``token``;
        the caller must resubmit with ``spec``.
    """
    built = False
    with _cache_lock:
        evaluator = _evaluators.get(token)
        if evaluator is None:
            spec = spec if spec is not None else _specs.get(token)
            if spec is None:
                return None
            evaluator = ContextEvaluator.from_spec(spec)
            built = True
            _evaluators[token] = evaluator
            while len(_evaluators) > _MAX_CACHED_CONTEXTS:
                _evaluators.popitem(last=False)
        _evaluators.move_to_end(token)
    start = time.perf_counter()
    if isinstance(positions, SharedChunk):
        energies, finite = _evaluate_shared(evaluator, positions)
        forces = None
    else:
        energies, forces, finite = evaluator.evaluate(positions)
    return ChunkResult(energies, forces, finite, os.getpid(), built, time.perf_counter() - start)


def _attach(name: str) -> shared_memory.SharedMemory:
    # The parent reuses one block across calls, so keeping it mapped saves an
    # open, a mapping and a page fault per page on every call.
    with _cache_lock:
        block = _blocks.get(name)
        if block is None:
            block = _blocks[name] = shared_memory.SharedMemory(name=name)
            while len(_blocks) > _MAX_ATTACHED_BLOCKS:
                _, old = _blocks.popitem(last=False)
                try:
                    old.close()
                except BufferError:
                    pass  # a traceback still holds a view of it; the mapping goes away with that
        _blocks.move_to_end(name)
        return block


def _evaluate_shared(evaluator: ContextEvaluator, chunk: SharedChunk) -> tuple[np.ndarray, np.ndarray]:
    arrays = np.ndarray((2, chunk.batch, chunk.n_atoms, 3), dtype=np.float64, buffer=_attach(chunk.name).buf)
    energies, _, finite = evaluator.evaluate(arrays[0, chunk.start : chunk.stop], forces_out=arrays[1, chunk.start : chunk.stop])
    return energies, finite
