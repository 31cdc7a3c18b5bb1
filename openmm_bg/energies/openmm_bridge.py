"""Reduced energies and forces of an OpenMM System, as a torch :class:`Energy`.

:class:`OpenMMEnergy` is on the hot path of training and sampling.  It maps
positions in nm to ``u = U / kT`` and, in the backward pass, returns
``-F / kT`` from the forces OpenMM computed in the same call: no finite
differences, no second evaluation, no cache keyed on tensor contents.

Failures stay visible.  A sample with non-finite positions, or on which OpenMM
returns a non-finite energy or force, gets ``u = +inf`` and ``finite = False``
in :meth:`OpenMMEnergy.evaluate`.  In the autograd path the energy stays
``+inf`` too, and only its *gradient* is set to zero, so that one broken sample
does not turn the gradient of a whole batch into NaN; training code is expected
to drop or regularise the ``~torch.isfinite(u)`` samples.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import uuid
import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import openmm
import torch
from torch import Tensor

from .._validation import ensure_count, ensure_positive
from ..units import as_kelvin, kt_kjmol, positions_nm
from .base import Energy
from .workers import ContextEvaluator, ContextSpec, WorkerPool

__all__ = ["OpenMMEnergy", "EnergyResult", "choose_platform", "reduced_energies", "SMALL_SYSTEM_ATOMS"]

#: up to this many particles (and without implicit solvent) the Reference platform wins; see docs/openmm_bridge.md
SMALL_SYSTEM_ATOMS = 150

# Generalized-Born forces are far slower on Reference than on CPU even for a dipeptide.
_GB_FORCES = ("GBSAOBCForce", "CustomGBForce", "AmoebaGeneralizedKirkwoodForce")
_PLATFORM_ORDER = ("CUDA", "OpenCL", "CPU", "Reference")


def _available_platforms() -> list[str]:
    return [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]


def choose_platform(system: openmm.System) -> str:
    """The OpenMM platform :class:`OpenMMEnergy` uses when none is given.

    Small systems without implicit solvent (at most :data:`SMALL_SYSTEM_ATOMS`
    particles) go to ``Reference``, whose per-call overhead is far below the
    other platforms'.  Everything else goes to the first available of CUDA,
    OpenCL, CPU and Reference.  The GPU part of this rule was not measured here
    (the development machine has no GPU).

    Parameters
    ----------
    system : openmm.System

    Returns
    -------
    str
        A platform name.
    """
    available = _available_platforms()
    has_gb = any(type(f).__name__ in _GB_FORCES for f in system.getForces())
    if system.getNumParticles() <= SMALL_SYSTEM_ATOMS and not has_gb and "Reference" in available:
        return "Reference"
    return next(name for name in _PLATFORM_ORDER if name in available)


@dataclass(frozen=True)
class EnergyResult:
    """Reduced energies and forces of a batch, as numpy arrays.

    Attributes
    ----------
    u : ndarray, shape (batch,), float64, kT
        Reduced energies; ``+inf`` where ``finite`` is False.
    forces : ndarray, shape (batch, n_atoms, 3), float64, kT/nm
        Reduced forces ``-du/dx``; ``NaN`` where ``finite`` is False.
    finite : ndarray, shape (batch,), bool
        False for samples with non-finite positions, energies or forces.
    """

    u: np.ndarray
    forces: np.ndarray
    finite: np.ndarray


class _ReducedEnergy(torch.autograd.Function):
    """u(x) in the caller's dtype; the backward pass reuses the forces of the same evaluation."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, bridge: "OpenMMEnergy") -> Tensor:  # type: ignore[override]
        result = bridge.evaluate(x)
        u = torch.from_numpy(result.u).to(dtype=x.dtype, device=x.device)
        # zero gradient where u is +inf, including a float32 overflow of a finite float64 energy
        usable = torch.from_numpy(result.finite).to(x.device) & torch.isfinite(u)
        grad = torch.from_numpy(-result.forces).to(dtype=x.dtype, device=x.device)
        grad[~usable] = 0.0
        ctx.save_for_backward(grad)
        return u

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_u: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad_u[:, None, None] * grad, None


class OpenMMEnergy(Energy):
    """Reduced energy ``u = U / kT`` of an OpenMM System, with forces as the backward pass.

    Parameters
    ----------
    system : openmm.System
        Serialized at construction; later changes to it are not seen.  A periodic
        System is evaluated in its default periodic box vectors.
    temperature : float (K) or openmm.unit.Quantity
    platform : str, optional
        ``"Reference"``, ``"CPU"``, ``"CUDA"`` or ``"OpenCL"``; by default
        :func:`choose_platform` picks one from the size of the System.
    platform_properties : dict of str -> str, optional
        OpenMM platform properties, e.g. ``{"Threads": "2"}`` or
        ``{"Precision": "double"}``.  With workers on the CPU platform,
        ``Threads`` defaults to ``"1"`` per worker.
    n_workers : int
        0 (default) evaluates in this process on one Context: fastest for cheap
        systems, nothing is pickled.  ``n >= 1`` splits each batch into ``n``
        chunks evaluated by worker processes (started with ``spawn``, each
        building its own Context once and reusing it between calls).
    executor : concurrent.futures.Executor, optional
        Run the chunks on this executor instead of a local process pool, e.g.
        ``dask.distributed.Client(...).get_executor()``.  Needs ``n_workers >= 1``
        (the number of chunks).  It is never shut down by this object.
    timeout : float, s
        Deadline for one call through the workers, including worker start-up.
        A hung or dead worker raises :class:`~openmm_bg.energies.workers.WorkerError`
        and the local pool is restarted.  Not enforceable when ``n_workers=0``.
        Can be changed later through the attribute of the same name.

    Notes
    -----
    Call with a tensor of shape ``(batch, n_atoms, 3)`` or ``(batch, 3 n_atoms)``
    in nm, float32 or float64; the result has shape ``(batch,)`` and the same
    dtype and device.  Samples that fail are ``+inf`` (see the module notes on
    their zero gradient).  Use :meth:`evaluate` for numpy results with a mask.

    Workers use ``spawn``, which re-imports the main module: scripts that
    use ``n_workers >= 1`` need an ``if __name__ == "__main__":`` guard.
    """

    def __init__(
        self,
        system: openmm.System,
        temperature: float | Any,
        *,
        platform: str | None = None,
        platform_properties: dict[str, Any] | None = None,
        n_workers: int = 0,
        executor: cf.Executor | None = None,
        timeout: float = 300.0,
    ):
        if not isinstance(system, openmm.System):
            raise TypeError(f"system must be an openmm.System, got {type(system).__name__}")
        n_atoms = system.getNumParticles()
        if n_atoms == 0:
            raise ValueError("system has no particles")
        if any(system.isVirtualSite(i) for i in range(n_atoms)):
            raise ValueError("systems with virtual sites are not supported: their positions are not free coordinates")
        if system.getNumConstraints() > 0:
            warnings.warn(
                f"the System has {system.getNumConstraints()} constraints; OpenMM leaves the constrained bonds out of "
                "the energy, so a flow that moves every atom needs a System built with constraints=None",
                stacklevel=2,
            )
        n_workers = ensure_count(n_workers, "n_workers", minimum=0)
        if executor is not None and n_workers == 0:
            raise ValueError("executor= needs n_workers >= 1: the number of chunks each batch is split into")
        available = _available_platforms()
        platform = choose_platform(system) if platform is None else platform
        if platform not in available:
            raise ValueError(f"platform must be one of the available OpenMM platforms {available}, got {platform!r}")
        properties = {str(k): str(v) for k, v in (platform_properties or {}).items()}
        known = list(openmm.Platform.getPlatformByName(platform).getPropertyNames())
        unknown = sorted(set(properties) - set(known))
        if unknown:
            raise ValueError(f"unknown properties {unknown} for the {platform} platform; it takes {known}")
        if n_workers >= 1 and platform == "CPU":
            properties.setdefault("Threads", "1")

        self.event_shape = (n_atoms, 3)
        self.temperature = as_kelvin(temperature)
        self.kt = kt_kjmol(self.temperature)
        self.platform = platform
        self.platform_properties = properties
        self.n_workers = n_workers
        self.timeout = timeout
        self._token = uuid.uuid4().hex
        self._spec = ContextSpec(openmm.XmlSerializer.serialize(system), platform, properties)
        self._local: ContextEvaluator | None = None
        self._pool: WorkerPool | None = None
        if n_workers == 0:
            self._local = ContextEvaluator(system, platform, properties)
        else:
            self._pool = WorkerPool(n_workers, executor, {self._token: self._spec})
            weakref.finalize(self, self._pool.close)
        #: Contexts built in workers so far (one per worker unless a pool was restarted)
        self.n_contexts_built = 0
        #: seconds workers spent evaluating, summed over workers and calls (call time minus this is transport)
        self.worker_seconds = 0.0

    @property
    def timeout(self) -> float:
        """Deadline in seconds for one call through the workers."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._timeout = ensure_positive(value, "timeout", "seconds")

    @property
    def pool(self) -> WorkerPool | None:
        """The worker pool, or None when evaluating in-process."""
        return self._pool

    def _as_positions(self, x: Tensor | np.ndarray) -> np.ndarray:
        n_atoms = self.event_shape[0]
        if isinstance(x, Tensor):
            if not x.is_floating_point():
                raise TypeError(f"positions must be a floating-point tensor in nm, got dtype {x.dtype}")
            array = x.detach().to(device="cpu", dtype=torch.float64).numpy()
        else:
            try:
                array = positions_nm(x)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"positions must be a tensor, an array in nm or a length Quantity, got {type(x).__name__}") from exc
        if array.ndim == 2 and array.shape[1] == 3 * n_atoms:
            array = array.reshape(array.shape[0], n_atoms, 3)
        if array.ndim != 3 or array.shape[1:] != (n_atoms, 3):
            raise ValueError(f"positions must have shape (batch, {n_atoms}, 3) or (batch, {3 * n_atoms}) in nm, got {tuple(array.shape)}")
        return np.ascontiguousarray(array)

    def evaluate(self, x: Tensor | np.ndarray) -> EnergyResult:
        """Reduced energies, reduced forces and a finite mask, without autograd.

        Parameters
        ----------
        x : Tensor, ndarray or openmm.unit.Quantity, shape (batch, n_atoms, 3) or (batch, 3 n_atoms), nm

        Returns
        -------
        EnergyResult
            ``u`` in kT, ``forces`` in kT/nm, ``finite`` mask; all float64 numpy.

        Raises
        ------
        WorkerTimeoutError, WorkerCrashedError, WorkerError
            From the worker pool; see :class:`~openmm_bg.energies.workers.WorkerPool`.
        """
        positions = self._as_positions(x)
        if self._local is not None:
            energies, forces, finite = self._local.evaluate(positions)
        else:
            energies, forces, finite = self._evaluate_in_workers(positions)
        # dividing +inf by kT keeps it +inf and NaN forces stay NaN: failures survive the scaling
        return EnergyResult(energies / self.kt, forces / self.kt, finite)

    def _evaluate_in_workers(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self._pool is not None
        energies, forces, finite, chunks = self._pool.evaluate(self._token, self._spec, positions, self._timeout)
        self.n_contexts_built += sum(c.built for c in chunks)
        self.worker_seconds += sum(c.seconds for c in chunks)
        return energies, forces, finite

    def reduced_energy(self, positions: np.ndarray) -> np.ndarray:
        """Reduced energies of numpy positions, without torch.

        Parameters
        ----------
        positions : ndarray, shape (batch, n_atoms, 3), nm

        Returns
        -------
        ndarray, shape (batch,), float64, kT; ``+inf`` for failed samples
        """
        return self.evaluate(np.asarray(positions)).u

    def _energy(self, x: Tensor) -> Tensor:
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{type(self).__name__} works in float32 or float64, got {x.dtype}")
        if torch.is_grad_enabled() and x.requires_grad:
            return _ReducedEnergy.apply(x, self)
        return torch.from_numpy(self.evaluate(x).u).to(dtype=x.dtype, device=x.device)

    def __reduce__(self) -> tuple:
        # Contexts and pools cannot be pickled; rebuild from the System XML (openmmtools deep-copies moves).
        if self._pool is not None and not self._pool.owns_executor:
            raise TypeError("an OpenMMEnergy bound to an external executor cannot be pickled; pickle one with n_workers only")
        args = (self._spec.system_xml, self.temperature, self.platform, self.platform_properties, self.n_workers, self.timeout)
        return (_rebuild, args)

    def close(self) -> None:
        """Stop the worker processes, if any.  The in-process Context stays usable."""
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> "OpenMMEnergy":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "in-process" if self._pool is None else f"{self.n_workers} workers"
        return f"{type(self).__name__}(n_atoms={self.event_shape[0]}, temperature={self.temperature:g} K, platform={self.platform!r}, {where})"


def _rebuild(system_xml: str, temperature: float, platform: str, properties: dict[str, str], n_workers: int, timeout: float) -> OpenMMEnergy:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the constraint warning was given when the original was built
        system = openmm.XmlSerializer.deserialize(system_xml)
        return OpenMMEnergy(system, temperature, platform=platform, platform_properties=properties, n_workers=n_workers, timeout=timeout)


def reduced_energies(
    system: openmm.System,
    temperature: float | Any,
    positions: np.ndarray,
    *,
    platform: str | None = None,
    box_vectors: np.ndarray | None = None,
) -> np.ndarray:
    """Reduced energies ``U(x) / kT`` of numpy positions in one call, in this process.

    Builds a Context for the call; keep an :class:`OpenMMEnergy` and use its
    :meth:`~OpenMMEnergy.reduced_energy` when calling repeatedly.

    Parameters
    ----------
    system : openmm.System
    temperature : float (K) or openmm.unit.Quantity
    positions : ndarray or openmm.unit.Quantity, shape (n_frames, n_atoms, 3) or (n_atoms, 3), nm
        One configuration of shape (n_atoms, 3) is a batch of one.
    platform : str, optional
        By default :func:`choose_platform` picks one.
    box_vectors : ndarray, shape (3, 3), nm, optional
        Periodic box (rows a, b, c) instead of the System's default box.

    Returns
    -------
    ndarray, shape (n_frames,), float64, kT
        ``+inf`` for a frame OpenMM cannot evaluate (non-finite positions, an
        OpenMM error, a non-finite energy), never a finite stand-in.
    """
    array = positions_nm(positions)
    if array.ndim == 2:
        array = array[None]
    if box_vectors is not None:
        box = np.asarray(box_vectors, dtype=np.float64)
        if box.shape != (3, 3):
            raise ValueError(f"box_vectors must have shape (3, 3) in nm, got {box.shape}")
        system = copy.deepcopy(system)
        system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in box))
    return OpenMMEnergy(system, temperature, platform=platform).reduced_energy(array)
