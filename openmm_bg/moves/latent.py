"""Random-walk Metropolis in the generator's latent space.

Latent-space Metropolis follows the adaptive sampling of Noé, Olsson, Köhler & Wu,
Science 365, eaaw1147 (2019).

From a configuration ``x`` with latent ``z = T_xz(x)``, propose ``z' = z + s N(0, I)``
and ``x' = T_zx(z')``.  The walk is symmetric in ``z``, and the target density of
``z`` is ``exp(-u(T_zx(z))) |det dT_zx/dz|``, so ``z'`` is accepted with

.. math:: \\min\\{1, \\exp(-[u(x') - u(x)] + \\log R_{zx}(z') + \\log R_{xz}(x))\\}

where ``R_zx = |det dT_zx/dz|`` at the proposal and ``R_xz = |det dT_xz/dx|`` at the
current configuration: both Jacobians, no prior.  (The last term is sometimes
written with the opposite sign; with ``R_xz(x) = 1 / R_zx(z)`` the form above is the
one that satisfies detailed balance, which the tests check.)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._validation import ensure_count
from ..generator.model import BoltzmannGenerator
from .base import GeneratorMoveBase
from .proposals import generator_dtype, inverse_with_domain, place_in_frame

__all__ = ["LatentMetropolisMove", "latent_log_acceptance"]


def latent_log_acceptance(u_old: Tensor | np.ndarray, u_new: Tensor | np.ndarray, ladj_xz_old: Tensor | np.ndarray, ladj_zx_new: Tensor | np.ndarray) -> np.ndarray:
    """Log acceptance ratio of latent random-walk steps.

    Parameters
    ----------
    u_old, u_new : array, shape (n,), kT
        Reduced energies of the current and proposed configurations.
    ladj_xz_old : array, shape (n,)
        ``log |det dT_xz/dx|`` at the current configurations.
    ladj_zx_new : array, shape (n,)
        ``log |det dT_zx/dz|`` at the proposed latents.

    Returns
    -------
    ndarray, shape (n,), float64
        ``-(u_new - u_old) + ladj_zx_new + ladj_xz_old``; NaN where any input is not finite.
    """
    arrays = [np.asarray(a.detach().double().cpu().numpy() if isinstance(a, Tensor) else a, dtype=np.float64) for a in (u_old, u_new, ladj_xz_old, ladj_zx_new)]
    u_old_, u_new_, ladj_xz_, ladj_zx_ = arrays
    log_ratio = -(u_new_ - u_old_) + ladj_zx_ + ladj_xz_
    return np.where(np.isfinite(log_ratio), log_ratio, np.nan)


class LatentMetropolisMove(GeneratorMoveBase):
    """An openmmtools move that random-walks in the latent space of a generator.

    Each :meth:`apply` runs ``n_steps`` Metropolis steps ``z' = T_xz(x) + s N(0, I)``
    accepted as in the module docstring.  The energy is the thermodynamic state's
    reduced potential, so the move is exact in any state; the generator only shapes
    the proposal.  With the rigid body removed, proposals keep the current pose (see
    :func:`~openmm_bg.moves.proposals.place_in_frame`).  Proposals outside the
    principal internal-coordinate domain or with non-finite values are rejected and
    counted.

    Parameters
    ----------
    generator : BoltzmannGenerator, str or Path
        Configurations of shape (n_atoms, 3), nm.
    step_size : float
        ``s``, in latent units (the prior has unit width for ``sigma = 1``).
    n_steps : int
        Metropolis steps per ``apply``.
    adapt_steps : int
        Number of first proposals (counted per copy of the move) during which ``s``
        adapts towards ``target_acceptance`` (Robbins-Monro on ``log s``).  After them
        ``s`` is frozen; only samples taken after burn-in are exact.  0 disables it.
    target_acceptance : float
        Acceptance rate the adaptation aims at.
    checkpoint : str or Path, optional
    seed : int, optional
    """

    def __init__(
        self,
        generator: BoltzmannGenerator | str | Path,
        step_size: float = 0.1,
        n_steps: int = 10,
        adapt_steps: int = 0,
        target_acceptance: float = 0.3,
        checkpoint: str | Path | None = None,
        seed: int | None = None,
    ):
        super().__init__(generator, checkpoint=checkpoint, seed=seed)
        if not (np.isfinite(step_size) and step_size > 0):
            raise ValueError(f"step_size must be a positive number, got {step_size!r}")
        if not 0 < target_acceptance < 1:
            raise ValueError(f"target_acceptance must lie in (0, 1), got {target_acceptance!r}")
        self.step_size = float(step_size)
        self.n_steps = ensure_count(n_steps, "n_steps")
        self.adapt_steps = ensure_count(adapt_steps, "adapt_steps", minimum=0)
        self.target_acceptance = float(target_acceptance)
        self.n_adapted = 0

    @property
    def adapting(self) -> bool:
        """True while the step size is still being adapted (burn-in)."""
        return self.n_adapted < self.adapt_steps

    def _adapt(self, accepted: bool) -> None:
        gain = 1.0 / math.sqrt(1.0 + self.n_adapted)
        self.step_size *= math.exp(gain * (float(accepted) - self.target_acceptance))
        self.n_adapted += 1

    def apply(self, thermodynamic_state: Any, sampler_state: Any, context_cache: Any = None) -> None:
        """Run ``n_steps`` latent Metropolis steps on ``sampler_state``.

        Parameters
        ----------
        thermodynamic_state : openmmtools.states.ThermodynamicState
        sampler_state : openmmtools.states.SamplerState
            Positions change only if a step is accepted; velocities and box never.
        context_cache : openmmtools.cache.ContextCache, optional
        """
        context = self._checked_context(thermodynamic_state, context_cache)
        x_start, u = self._current(thermodynamic_state, sampler_state, context)
        torch_generator, rng = self._random_streams()
        generator = self.generator
        dtype = generator_dtype(generator)
        frame = self.frame_atoms
        with torch.no_grad():
            z, ladj_xz = generator.flow.forward(torch.as_tensor(x_start, dtype=dtype)[None])
        ladj_xz = float(ladj_xz[0])
        noise = torch.randn(self.n_steps, z.shape[1], generator=torch_generator, dtype=dtype)
        log_uniform = np.log(rng.random(self.n_steps))
        x_current = None
        for step in range(self.n_steps):
            # a step on the torus where the latent has circular dimensions: still a symmetric proposal
            z_new = generator.prior.wrap(z + self.step_size * noise[step : step + 1])
            with torch.no_grad():
                x_new, ladj_zx, ok = inverse_with_domain(generator, z_new)
            self.n_proposed += 1
            if not bool(ok[0]):
                self.n_out_of_domain += 1
                self._maybe_adapt(False)
                continue
            x_new = x_new.double().numpy()
            if frame is not None:
                x_new = place_in_frame(x_new, x_start, frame)
            u_new = self._reduced_potentials(thermodynamic_state, context, x_new, np.ones(1, dtype=bool))
            log_ratio = latent_log_acceptance([u], u_new, [ladj_xz], ladj_zx)[0]
            if not np.isfinite(log_ratio):
                self.n_nonfinite += 1
                self._maybe_adapt(False)
                continue
            accepted = bool(log_uniform[step] < log_ratio)
            if accepted:
                self.n_accepted += 1
                z, u, ladj_xz, x_current = z_new, float(u_new[0]), -float(ladj_zx[0]), x_new[0]
            self._maybe_adapt(accepted)
        if x_current is not None:
            self._accept(sampler_state, x_current)

    def _maybe_adapt(self, accepted: bool) -> None:
        if self.adapting:
            self._adapt(accepted)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(
            step_size=self.step_size,
            n_steps=self.n_steps,
            adapt_steps=self.adapt_steps,
            target_acceptance=self.target_acceptance,
            n_adapted=self.n_adapted,
        )
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.step_size = float(state["step_size"])
        self.n_steps = int(state["n_steps"])
        self.adapt_steps = int(state["adapt_steps"])
        self.target_acceptance = float(state["target_acceptance"])
        self.n_adapted = int(state["n_adapted"])
