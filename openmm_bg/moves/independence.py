"""Independence Metropolis-Hastings with a Boltzmann generator as the proposal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import openmm.unit as unit
import torch

from .._validation import ensure_count
from ..generator.model import BoltzmannGenerator
from .base import GeneratorMoveBase
from .proposals import generator_dtype, place_in_frame

__all__ = ["BoltzmannGeneratorMove"]


class BoltzmannGeneratorMove(GeneratorMoveBase):
    """An openmmtools move that proposes whole new configurations from a generator.

    Each :meth:`apply` draws ``n_proposals`` configurations in one batched generator
    call, evaluates their reduced potentials with the thermodynamic state's Context,
    and runs ``n_proposals`` independence Metropolis-Hastings steps in a row.  A
    proposal ``x'`` replaces the current configuration ``x`` with probability

    .. math:: \\min\\{1, e^{-[u(x') - u(x)]}\\, p(x) / p(x')\\}

    where ``u`` is ``thermodynamic_state.reduced_potential`` and ``p`` the generator's
    Cartesian density (:meth:`BoltzmannGenerator.log_prob`, which holds the
    internal-coordinate Jacobian).  Since the proposal does not depend on the current
    configuration, drawing the batch first is exact.

    * **Rigid body removed.**  Proposals are put into the pose of the current
      configuration (:func:`~openmm_bg.moves.proposals.place_in_frame`), so the move
      changes internal coordinates only and the ratio above is the internal-coordinate
      density ratio.  MD (or another move) must sample the pose.
    * **Rigid body kept, or no internal coordinates.**  ``p`` covers all of Cartesian
      space and proposals are used as drawn.
    * **Rejections** leave the ``SamplerState`` untouched (positions, velocities and box
      are the same objects, bit for bit).  Proposals with non-finite positions or
      energies, or internal coordinates outside the principal domain, are rejected and
      counted in ``statistics``.
    * **Acceptance** keeps the velocities; the move leaves the Maxwell-Boltzmann
      distribution of the momenta unchanged.

    Parameters
    ----------
    generator : BoltzmannGenerator, str or Path
        The generator or its checkpoint path; configurations of shape (n_atoms, 3), nm.
    n_proposals : int
        Proposals per ``apply``.
    reference_temperature : float, K, optional
        Temperature the generator was trained at.  If given, proposals are drawn at
        the relative temperature ``T_state / reference_temperature`` (the prior widens
        by its square root) and the density of that tempered generator enters the
        ratio; otherwise the generator is used as it is at every state.  Either way
        the move is exact; only its efficiency depends on the choice.
    checkpoint : str or Path, optional
        See :class:`~openmm_bg.moves.base.GeneratorMoveBase`.
    seed : int, optional
        Root of the move's random streams.
    """

    def __init__(
        self,
        generator: BoltzmannGenerator | str | Path,
        n_proposals: int = 10,
        reference_temperature: float | None = None,
        checkpoint: str | Path | None = None,
        seed: int | None = None,
    ):
        super().__init__(generator, checkpoint=checkpoint, seed=seed)
        if reference_temperature is not None and not (np.isfinite(reference_temperature) and reference_temperature > 0):
            raise ValueError(f"reference_temperature must be a positive number of kelvin or None, got {reference_temperature!r}")
        self.n_proposals = ensure_count(n_proposals, "n_proposals")
        self.reference_temperature = None if reference_temperature is None else float(reference_temperature)

    def relative_temperature(self, thermodynamic_state: Any) -> float:
        """Relative temperature ``tau`` at which the generator proposes in this state."""
        if self.reference_temperature is None:
            return 1.0
        return float(thermodynamic_state.temperature.value_in_unit(unit.kelvin)) / self.reference_temperature

    def apply(self, thermodynamic_state: Any, sampler_state: Any, context_cache: Any = None) -> None:
        """Run ``n_proposals`` independence Metropolis-Hastings steps on ``sampler_state``.

        Parameters
        ----------
        thermodynamic_state : openmmtools.states.ThermodynamicState
            Defines the reduced potential (ensemble and temperature).
        sampler_state : openmmtools.states.SamplerState
            Changed in place only if a proposal is accepted (positions only).
        context_cache : openmmtools.cache.ContextCache, optional
            Default: openmmtools' global cache.
        """
        context = self._checked_context(thermodynamic_state, context_cache)
        x_old, u_old = self._current(thermodynamic_state, sampler_state, context)
        tau = self.relative_temperature(thermodynamic_state)
        torch_generator, rng = self._random_streams()
        generator = self.generator
        dtype = generator_dtype(generator)
        with torch.no_grad():
            log_p_old = float(generator.log_prob(torch.as_tensor(x_old, dtype=dtype)[None], tau)[0])
            x_new, _, log_p_new = generator.propose(self.n_proposals, tau, generator=torch_generator)
        x_new, log_p_new = x_new.double().numpy(), log_p_new.double().numpy()
        # propose marks the rows outside the principal domain with a NaN density
        in_domain = np.isfinite(log_p_new)
        if self.frame_atoms is not None and in_domain.any():
            x_new[in_domain] = place_in_frame(x_new[in_domain], x_old, self.frame_atoms)
        u_new = self._reduced_potentials(thermodynamic_state, context, x_new, in_domain)
        self._independence_chain(sampler_state, rng, x_new, u_new, log_p_new, in_domain, u_old, log_p_old)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(n_proposals=self.n_proposals, reference_temperature=self.reference_temperature)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.n_proposals = int(state["n_proposals"])
        reference = state.get("reference_temperature")
        self.reference_temperature = None if reference is None else float(reference)
