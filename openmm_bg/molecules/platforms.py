"""The OpenMM platform for the user's own system, chosen by timing it.

Which platform is fastest depends on the System, not on a rule of thumb: alanine
dipeptide in vacuum takes about 25 µs per energy and forces on Reference and 200 µs on
CPU, while the same molecule with OBC implicit solvent takes 4 ms on Reference and
0.6 ms on CPU (2-core development machine).  :func:`fastest_platform` times a few
evaluations on each candidate and returns the fastest; :func:`select_platform` is what
:func:`openmm_bg.molecules.load_system` calls: ``"auto"`` times, a platform's name is
taken as given.  Registered systems (:func:`openmm_bg.molecules.get_system`) keep the
platform measured when they were added.

The choice is logged (logger ``openmm_bg.molecules.platforms``, level INFO), and the
command line prints it; see :meth:`PlatformChoice.summary`.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import openmm

__all__ = ["AUTO", "DEFAULT_CANDIDATES", "PlatformChoice", "installed_platforms", "check_platform_name", "time_energy_and_forces", "fastest_platform", "select_platform"]

#: the platform name that asks for a timing
AUTO = "auto"

#: the platforms timed by default, where installed, in the order that breaks exact ties
DEFAULT_CANDIDATES = ("Reference", "CPU", "CUDA", "OpenCL")

_LOG = logging.getLogger(__name__)

Timer = Callable[[openmm.System, np.ndarray, str, int, "np.ndarray | None"], float]


@dataclass(frozen=True)
class PlatformChoice:
    """The platform chosen, and how.

    Attributes
    ----------
    name : str
        The OpenMM platform's name.
    seconds : dict of str to float
        Seconds per energy-and-forces evaluation of each candidate timed, fastest first;
        empty when the platform was given by name.
    failed : dict of str to str
        Candidates that could not evaluate the System (e.g. CUDA without a GPU) and OpenMM's message.
    """

    name: str
    seconds: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        """Whether the platform was chosen by a timing."""
        return bool(self.seconds)

    def summary(self) -> str:
        """One line, e.g. ``"OpenMM platform CPU: the fastest in a timing of energy and forces (CPU 0.55 ms, Reference 4.1 ms per call)"``."""
        if not self.measured:
            return f"OpenMM platform {self.name}: chosen by name"
        timed = ", ".join(f"{name} {1e3 * s:.3g} ms" for name, s in self.seconds.items())
        failed = "".join(f"; {name} failed: {message}" for name, message in self.failed.items())
        return f"OpenMM platform {self.name}: the fastest in a timing of energy and forces ({timed} per call{failed})"


def installed_platforms() -> list[str]:
    """The names of the OpenMM platforms installed here (plugins loaded), e.g. ``["Reference", "CPU"]``."""
    return [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]


def check_platform_name(name: str, *, allow_auto: bool = True) -> str:
    """``name`` if it is an installed platform (or ``"auto"``), else a ``ValueError`` listing them.

    Parameters
    ----------
    name : str
    allow_auto : bool
        Whether ``"auto"`` is accepted.

    Returns
    -------
    str
    """
    valid = [*((AUTO,) if allow_auto else ()), *installed_platforms()]
    if not isinstance(name, str) or name not in valid:
        raise ValueError(f"unknown OpenMM platform {name!r}; choose one of {', '.join(valid)}")
    return name


def time_energy_and_forces(system: openmm.System, positions: np.ndarray, platform: str, evaluations: int, box_vectors: np.ndarray | None = None) -> float:
    """Seconds per energy-and-forces evaluation of ``system`` on ``platform`` (median of ``evaluations`` calls).

    One call sets the positions and reads the energy and forces, as a Boltzmann
    generator's target does for each configuration.  The Context's creation and a first
    call (neighbour lists, kernels) are not timed.

    Parameters
    ----------
    system : openmm.System
    positions : ndarray, shape (n_atoms, 3), nm
    platform : str
    evaluations : int
        Timed calls, at least 1.
    box_vectors : ndarray, shape (3, 3), nm, optional
        The periodic box of ``positions``.

    Returns
    -------
    float, s

    Raises
    ------
    openmm.OpenMMException
        If the platform cannot make a Context for ``system`` (e.g. no GPU).
    """
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    if box_vectors is not None:
        context.setPeriodicBoxVectors(*box_vectors)
    context.setPositions(positions)
    context.getState(getEnergy=True, getForces=True)
    seconds = []
    for _ in range(evaluations):
        start = time.perf_counter()
        context.setPositions(positions)
        context.getState(getEnergy=True, getForces=True)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def fastest_platform(
    system: openmm.System,
    positions: np.ndarray,
    candidates: Sequence[str] | None = None,
    *,
    evaluations: int = 5,
    box_vectors: np.ndarray | None = None,
    timer: Timer = time_energy_and_forces,
) -> PlatformChoice:
    """Time ``evaluations`` energy-and-forces calls on each candidate platform and choose the fastest.

    Parameters
    ----------
    system : openmm.System
    positions : ndarray, shape (n_atoms, 3), nm
    candidates : sequence of str, optional
        Platform names to time; each must be installed.  None (default): those of
        :data:`DEFAULT_CANDIDATES` that are installed, so CUDA and OpenCL are timed only
        where their plugins load.
    evaluations : int
        Timed calls per candidate (default 5: about 1 ms in all for alanine dipeptide in
        vacuum, 25 ms with implicit solvent).
    box_vectors : ndarray, shape (3, 3), nm, optional
    timer : callable
        ``timer(system, positions, platform, evaluations, box_vectors) -> seconds per call``;
        :func:`time_energy_and_forces` by default (a test passes fake timings).

    Returns
    -------
    PlatformChoice
        The fastest; a candidate that raises ``openmm.OpenMMException`` (no device, say)
        is left out and named in :attr:`PlatformChoice.failed`.

    Raises
    ------
    ValueError
        An unknown candidate, no candidate, or none that could evaluate the System.
    """
    from .._validation import ensure_count

    ensure_count(evaluations, "evaluations")
    installed = installed_platforms()
    if candidates is None:
        names = [name for name in DEFAULT_CANDIDATES if name in installed]
    else:
        names = [check_platform_name(name, allow_auto=False) for name in candidates]
    if not names:
        raise ValueError(f"no candidate platforms to time; installed: {', '.join(installed)}")
    seconds, failed = {}, {}
    for name in names:
        try:
            seconds[name] = float(timer(system, positions, name, evaluations, box_vectors))
        except openmm.OpenMMException as error:
            failed[name] = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if not seconds:
        raise ValueError("no candidate platform could evaluate the System: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    ranked = dict(sorted(seconds.items(), key=lambda item: item[1]))  # stable: ties keep the candidates' order
    return PlatformChoice(next(iter(ranked)), ranked, failed)


def select_platform(
    platform: str,
    system: openmm.System,
    positions: np.ndarray,
    *,
    box_vectors: np.ndarray | None = None,
    candidates: Sequence[str] | None = None,
    evaluations: int = 5,
    timer: Timer = time_energy_and_forces,
) -> PlatformChoice:
    """``platform`` as given, or for ``"auto"`` the :func:`fastest_platform`; the choice is logged at INFO.

    Parameters
    ----------
    platform : str
        ``"auto"`` or an installed platform's name (then nothing is timed).
    system, positions, box_vectors, candidates, evaluations, timer
        As in :func:`fastest_platform`.

    Returns
    -------
    PlatformChoice

    Raises
    ------
    ValueError
        An unknown platform name (the message lists the installed ones).
    """
    check_platform_name(platform)
    if platform == AUTO:
        choice = fastest_platform(system, positions, candidates, evaluations=evaluations, box_vectors=box_vectors, timer=timer)
    else:
        choice = PlatformChoice(platform)
    _LOG.info(choice.summary())
    return choice
