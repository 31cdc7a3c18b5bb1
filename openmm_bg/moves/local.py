r"""Local generator moves: regenerate part of a molecule, keep the rest exactly in place.

A whole-molecule proposal's acceptance falls roughly exponentially with the number of
coordinates it regenerates, so for a protein it is tiny.  A local proposal draws only
the internal coordinates ``q_S`` of a chosen fragment (a side chain, a terminal segment)
from a generator trained on them, and places the fragment on the fixed atoms
(:class:`~openmm_bg.coordinates.local.LocalInternalCoordinates`).  It does not depend
on the current fragment, so independence Metropolis-Hastings with the generator's
density of the *moved coordinates only* is exact:

.. math:: \alpha = \min\left\{1,\; e^{-[u(x') - u(x)]}\,
   \frac{p_Q(q_S)\,|\det \partial q_S/\partial x_S|(x)}{p_Q(q'_S)\,|\det \partial q_S/\partial x_S|(x')}\right\}

where ``x`` and ``x'`` differ only in the fragment and the determinant is the
internal-coordinate Jacobian of the moved atoms.  The generator's density need not
match the conditional Boltzmann density of the fragment given its surroundings; it only
sets the acceptance.  Which atoms may form a fragment is stated in
:mod:`openmm_bg.coordinates.local`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .._validation import ensure_count
from ..coordinates.guarded import CircularToReal
from ..coordinates.local import LocalInternalCoordinates, local_rows, select_atoms
from ..coordinates.normalization import InternalCoordinateNormalization
from ..flows.base import Sequential
from ..flows.builders import neural_spline, real_nvp
from ..generator.model import BoltzmannGenerator
from ..generator.prior import NormalPrior
from .base import GeneratorMoveBase
from .proposals import generator_dtype

__all__ = ["local_generator", "local_generator_from_data", "LocalGeneratorMove"]

#: dotted path of the builder, for :func:`openmm_bg.generator.save_generator`
BUILDER = "openmm_bg.moves.local.local_generator"


def local_generator(
    energy: Any = None,
    *,
    rows: Sequence[Sequence[int]],
    n_atoms: int,
    n_blocks: int = 4,
    hidden: Sequence[int] = (64, 64),
    coupling: str = "spline",
    n_bins: int = 8,
    spline_bound: float = 5.0,
    double: bool = True,
) -> BoltzmannGenerator:
    """A generator over the internal coordinates of a fragment (see the module docstring).

    Layers, coordinates -> latent: normalisation (torsions to one turn), ``atanh`` on the
    torsions, and a coupling flow; Gaussian prior.  The fragment's geometry travels as
    the submodule ``local_coordinates`` (in the state dict).

    Parameters
    ----------
    energy : ignored
        For :func:`openmm_bg.generator.load_generator`; a local generator has no target of its own.
    rows : list of [atom, bond, angle, torsion]
        From :func:`openmm_bg.coordinates.local.local_rows`.
    n_atoms : int
        Atoms of the whole molecule.
    n_blocks, hidden, coupling, n_bins, spline_bound
        ``coupling`` is ``"spline"`` (:func:`openmm_bg.flows.neural_spline`) or ``"affine"`` (RealNVP).
    double : bool
    """
    local = LocalInternalCoordinates(rows, n_atoms)
    dim = local.dim
    if dim < 2:
        raise ValueError("a local generator needs at least 2 coordinates")
    if coupling == "spline":
        couplings = neural_spline(dim, n_blocks=n_blocks, hidden=tuple(hidden), n_bins=n_bins, bound=spline_bound, permute=True)
    elif coupling == "affine":
        couplings = real_nvp(dim, n_blocks=n_blocks, hidden=tuple(hidden), permute=True)
    else:
        raise ValueError(f"coupling must be 'spline' or 'affine', got {coupling!r}")
    flow = Sequential(InternalCoordinateNormalization(local.circular), CircularToReal(local.circular), couplings)
    generator = BoltzmannGenerator(NormalPrior(dim), flow, None, event_shape=(dim,))
    generator.local_coordinates = local
    return generator.double() if double else generator


def local_generator_from_data(topology, positions, selection: str | Sequence[int], *, system=None, zmatrix=None, **architecture) -> tuple[BoltzmannGenerator, dict, torch.Tensor]:
    """Build a local generator for ``selection`` and fit its normalisation on training positions.

    Parameters
    ----------
    topology : mdtraj.Topology or openmm.app.Topology
    positions : array (n_frames, n_atoms, 3), nm
    selection : str or list of int
        An mdtraj selection (``"resid 5 and sidechain"``) or atom indices.
    system : openmm.System, optional
        Checked for constraints on the moved atoms.
    zmatrix : optional
        Default: built from the topology.
    **architecture
        Keywords of :func:`local_generator`.

    Returns
    -------
    generator : BoltzmannGenerator
    builder_kwargs : dict
        For :func:`openmm_bg.generator.save_generator` with builder ``openmm_bg.moves.local.local_generator``.
    q : Tensor (n_frames, dim)
        The fragment's internal coordinates in the training frames (train by example on them).
    """
    from ..topology import as_topology

    top = as_topology(topology)
    rows = local_rows(top, select_atoms(top, selection), zmatrix=zmatrix, system=system)
    x = torch.as_tensor(np.asarray(positions), dtype=torch.float64)
    if x.ndim != 3 or x.shape[1:] != (top.n_atoms, 3):
        raise ValueError(f"positions must have shape (n_frames, {top.n_atoms}, 3) in nm, got {tuple(x.shape)}")
    kwargs = {"rows": rows.tolist(), "n_atoms": int(top.n_atoms), **{k: list(v) if isinstance(v, tuple) else v for k, v in architecture.items()}}
    generator = local_generator(**kwargs)
    generator.local_coordinates.record_hydrogens(top)
    q, _ = generator.local_coordinates(x)
    normalization = generator.flow[0]
    normalization.load_state_dict(InternalCoordinateNormalization.fit(q, generator.local_coordinates.circular).state_dict())
    return generator, kwargs, q


class LocalGeneratorMove(GeneratorMoveBase):
    """An openmmtools move that regenerates one fragment of the molecule; the rest stays in place.

    Each :meth:`apply` draws ``n_proposals`` fragment coordinates in one batch, places
    each on the current fixed atoms, and runs that many independence Metropolis-Hastings
    steps with the ratio of the module docstring.  Rejections leave the ``SamplerState``
    untouched; acceptance changes the fragment's positions only and keeps the
    velocities.  Proposals outside the coordinate domain (a negative bond, an angle
    outside [0, pi]) or with a non-finite energy are rejected and counted.

    Parameters
    ----------
    generator : BoltzmannGenerator, str or Path
        A local generator (:func:`local_generator`), or its checkpoint.
    n_proposals : int
    checkpoint : str or Path, optional
        See :class:`~openmm_bg.moves.base.GeneratorMoveBase` (needed to serialise the move).
    seed : int, optional
    """

    def __init__(self, generator: BoltzmannGenerator | str | Path, n_proposals: int = 10, checkpoint: str | Path | None = None, seed: int | None = None):
        super().__init__(generator, checkpoint=checkpoint, seed=seed)
        self.n_proposals = ensure_count(n_proposals, "n_proposals")

    @staticmethod
    def _check_generator(generator: BoltzmannGenerator) -> None:
        local = getattr(generator, "local_coordinates", None)
        if not isinstance(local, LocalInternalCoordinates) or generator.event_shape != (local.dim,):
            raise ValueError("LocalGeneratorMove needs a local generator (openmm_bg.moves.local.local_generator); "
                             "this one regenerates the whole molecule: use BoltzmannGeneratorMove")

    def _n_particles(self) -> int:
        return self._generator.local_coordinates.n_atoms

    def _checked_context(self, thermodynamic_state: Any, context_cache: Any):
        context = super()._checked_context(thermodynamic_state, context_cache)
        self._generator.local_coordinates.check_system(context.getSystem())
        return context

    @property
    def moved_atoms(self) -> np.ndarray:
        """Indices of the atoms the move regenerates."""
        return self._generator.local_coordinates.moved.numpy().copy()

    def apply(self, thermodynamic_state: Any, sampler_state: Any, context_cache: Any = None) -> None:
        """Run ``n_proposals`` local Metropolis-Hastings steps on ``sampler_state``."""
        context = self._checked_context(thermodynamic_state, context_cache)
        x_old, u_old = self._current(thermodynamic_state, sampler_state, context)
        torch_generator, rng = self._random_streams()
        generator, local = self.generator, self.generator.local_coordinates
        dtype = generator_dtype(generator)
        with torch.no_grad():
            fixed = torch.as_tensor(x_old, dtype=torch.float64)
            q_old, ladj_old = local(fixed[None])
            log_q_old = float(generator.log_prob(q_old.to(dtype))[0]) + float(ladj_old[0])
            q_new, _, log_p_new = generator.propose(self.n_proposals, generator=torch_generator)
            q_new = q_new.double()
            in_domain = torch.isfinite(log_p_new) & local.in_domain(q_new)
            x_new = np.full((self.n_proposals, *x_old.shape), np.nan)
            log_q_new = np.full(self.n_proposals, np.nan)
            if in_domain.any():
                placed, ladj_placed = local.place(q_new[in_domain], fixed)
                x_new[in_domain.numpy()] = placed.numpy()
                # density of the new fragment positions: p_Q(q') |det dq/dx_S| = p_Q(q') / |det dx_S/dq|
                log_q_new[in_domain.numpy()] = log_p_new[in_domain].double().numpy() - ladj_placed.numpy()
        in_domain = in_domain.numpy()
        u_new = self._reduced_potentials(thermodynamic_state, context, x_new, in_domain)
        self._independence_chain(sampler_state, rng, x_new, u_new, log_q_new, in_domain, u_old, log_q_old)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(n_proposals=self.n_proposals)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._check_generator(self._generator)
        self.n_proposals = int(state["n_proposals"])
