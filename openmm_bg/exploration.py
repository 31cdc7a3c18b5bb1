"""Adaptive exploration: train a generator while it samples (Noe et al. 2019, seed 002).

Starting from one configuration:

0. short Cartesian random-walk Metropolis chains from it fill a buffer (and give the
   internal-coordinate normalisation its spread);
1. draw a batch from the buffer;
2. train the generator on the batch (maximum likelihood);
3. propose a latent Metropolis step ``z' = T_xz(x) + s N(0, I)`` for each member;
4. accept or reject with the energy and both Jacobians
   (:func:`~openmm_bg.moves.latent_log_acceptance`);
5. put the accepted configurations back into the buffer in place of their origin;
6. repeat.

With the generator fixed, every buffer slot is an exact latent Metropolis chain; the
generator changes between iterations, so the buffer is only approximately at
equilibrium.  At the end the final generator draws fresh samples that are
reweighted to equilibrium with ``log w = -u(x) - log p(x)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .coordinates import GuardedCoordinates, InternalCoordinateNormalization
from .generator import BoltzmannGenerator
from .moves.latent import latent_log_acceptance
from .moves.proposals import generator_dtype, inverse_with_domain, place_in_frame, rigid_frame_atoms
from .reweighting import kish_ess

__all__ = ["ExplorationSettings", "ExplorationResult", "explore"]


@dataclass
class ExplorationSettings:
    """Settings of :func:`explore`.

    Attributes
    ----------
    n_iterations : int
        Sampling-and-training iterations.
    buffer_size, batch_size : int
        Configurations kept, and drawn per iteration.
    train_steps : int
        Optimiser steps per iteration, each on the iteration's batch.
    learning_rate : float
    step_size : float
        Latent step ``s``.
    warmup_steps : int
        Cartesian random-walk Metropolis steps of every buffer chain before training.
    warmup_step_size : float, nm
        Standard deviation of each Cartesian coordinate's warm-up step.
    n_final_samples : int
        Samples drawn from the final generator for reweighting.
    seed : int
    """

    n_iterations: int = 200
    buffer_size: int = 256
    batch_size: int = 128
    train_steps: int = 1
    learning_rate: float = 1e-3
    step_size: float = 0.5
    warmup_steps: int = 50
    warmup_step_size: float = 0.0005
    n_final_samples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_iterations", "buffer_size", "batch_size", "train_steps", "warmup_steps", "n_final_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name in ("warmup_steps", "n_final_samples", "n_iterations") else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name in ('warmup_steps', 'n_final_samples', 'n_iterations') else 'positive'} integer, got {value!r}")
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed buffer_size ({self.buffer_size})")
        for name in ("learning_rate", "step_size", "warmup_step_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


@dataclass
class ExplorationResult:
    """What :func:`explore` returns.

    Attributes
    ----------
    buffer : ndarray, shape (buffer_size, n_atoms, 3), float64, nm
    buffer_energies : ndarray, shape (buffer_size,), float64, kT
    history : list of dict
        Per iteration: ``iteration``, ``acceptance``, ``loss``, ``n_energy_evaluations``
        (cumulative, warm-up included) and ``in_target`` (buffer fraction in the target state).
    n_energy_evaluations : int
        All target-energy evaluations made, warm-up included.
    evaluations_to_target : int or None
        Cumulative evaluations when a configuration first entered the target state.
    samples : ndarray, shape (n_final_samples, n_atoms, 3), float64, nm
        Fresh samples of the final generator.
    log_weights : ndarray, shape (n_final_samples,), float64
        ``-u(x) - log p(x)``, ``-inf`` where the energy failed.
    ess : float
        Kish effective sample size of ``log_weights`` (NaN without samples).
    """

    buffer: np.ndarray
    buffer_energies: np.ndarray
    history: list[dict] = field(default_factory=list)
    n_energy_evaluations: int = 0
    evaluations_to_target: int | None = None
    samples: np.ndarray | None = None
    log_weights: np.ndarray | None = None
    ess: float = float("nan")


def _energies(energy: Callable[[Tensor], Tensor], x: Tensor) -> np.ndarray:
    with torch.no_grad():
        u = energy(x).detach().double().cpu().numpy()
    return np.where(np.isfinite(u), u, np.inf)


def _warm_up(energy, x0: np.ndarray, settings: ExplorationSettings, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    buffer = np.repeat(x0[None], settings.buffer_size, axis=0)
    u = _energies(energy, torch.as_tensor(buffer))
    if not np.isfinite(u[0]):
        raise ValueError("the starting configuration has a non-finite energy")
    n_evals = len(buffer)
    for _ in range(settings.warmup_steps):
        trial = buffer + settings.warmup_step_size * rng.standard_normal(buffer.shape)
        u_trial = _energies(energy, torch.as_tensor(trial))
        n_evals += len(trial)
        accept = np.log(rng.random(len(trial))) < -(u_trial - u)
        buffer[accept], u[accept] = trial[accept], u_trial[accept]
    return buffer, u, n_evals


def _refit_normalization(generator: BoltzmannGenerator, x: Tensor) -> None:
    for layer in generator.flow.modules():
        if isinstance(layer, GuardedCoordinates):
            with torch.no_grad():
                fitted = InternalCoordinateNormalization.fit(layer.transform.forward(x)[0], layer.transform.circular)
            layer.normalization.load_state_dict(fitted.state_dict())


def explore(
    generator: BoltzmannGenerator,
    energy: Callable[[Tensor], Tensor],
    x0: np.ndarray,
    settings: ExplorationSettings | None = None,
    target: Callable[[np.ndarray], np.ndarray] | None = None,
    stop_at_target: bool = False,
    progress: Callable[[dict], None] | None = None,
) -> ExplorationResult:
    """Run the adaptive sampling-and-training loop from one configuration.

    Parameters
    ----------
    generator : BoltzmannGenerator
        Trained in place.  The normalisation of its internal coordinates (a
        :class:`~openmm_bg.coordinates.GuardedCoordinates` layer, as
        :func:`~openmm_bg.builders.molecular_generator` builds) is refitted to the warm-up buffer.
    energy : callable
        Reduced target energy in kT: Tensor (batch, n_atoms, 3) nm -> Tensor (batch,),
        non-finite where it fails (e.g. :class:`~openmm_bg.energies.OpenMMEnergy`).
    x0 : ndarray, shape (n_atoms, 3), nm
        The single starting configuration.
    settings : ExplorationSettings, optional
    target : callable, optional
        ``target(positions (n, n_atoms, 3) nm) -> bool (n,)``: a state to watch for.
    stop_at_target : bool
        Stop at the end of the iteration in which the target is first reached.
    progress : callable, optional
        Called with each iteration's history entry.

    Returns
    -------
    ExplorationResult
    """
    settings = settings or ExplorationSettings()
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.shape != generator.event_shape:
        raise ValueError(f"x0 must have shape {generator.event_shape}, got {x0.shape}")
    rng = np.random.default_rng(settings.seed)
    torch_generator = torch.Generator().manual_seed(settings.seed)
    dtype = generator_dtype(generator)
    frame = rigid_frame_atoms(generator)

    buffer, u_buffer, n_evals = _warm_up(energy, x0, settings, rng)
    _refit_normalization(generator, torch.as_tensor(buffer, dtype=dtype))
    result = ExplorationResult(buffer=buffer, buffer_energies=u_buffer)
    optimizer = torch.optim.Adam([p for p in generator.parameters() if p.requires_grad], lr=settings.learning_rate)

    def check_target(x: np.ndarray) -> None:
        if target is not None and result.evaluations_to_target is None and np.any(target(x)):
            result.evaluations_to_target = n_evals

    check_target(buffer)
    for iteration in range(settings.n_iterations):
        index = rng.choice(settings.buffer_size, settings.batch_size, replace=False)
        batch = torch.as_tensor(buffer[index], dtype=dtype)
        for _ in range(settings.train_steps):
            optimizer.zero_grad()
            loss = -generator.log_prob(batch).mean()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            z, ladj_xz = generator.flow.forward(batch)
            z_new = z + settings.step_size * torch.randn(z.shape, generator=torch_generator, dtype=dtype)
            x_new, ladj_zx, ok = inverse_with_domain(generator, z_new)
        x_new, ok = x_new.double().numpy(), ok.numpy()
        if frame is not None and ok.any():
            x_new[ok] = place_in_frame(x_new[ok], buffer[index][ok], frame)
        u_new = np.full(len(index), np.inf)
        if ok.any():
            u_new[ok] = _energies(energy, torch.as_tensor(x_new[ok]))
            n_evals += int(ok.sum())
        log_ratio = latent_log_acceptance(u_buffer[index], u_new, ladj_xz, ladj_zx)
        accept = ok & np.isfinite(log_ratio) & (np.log(rng.random(len(index))) < np.nan_to_num(log_ratio, nan=-np.inf))
        buffer[index[accept]], u_buffer[index[accept]] = x_new[accept], u_new[accept]
        check_target(x_new[accept])
        entry = dict(
            iteration=iteration,
            acceptance=float(accept.mean()),
            loss=float(loss.detach()),
            n_energy_evaluations=n_evals,
            in_target=float(np.mean(target(buffer))) if target is not None else float("nan"),
        )
        result.history.append(entry)
        if progress is not None:
            progress(entry)
        if stop_at_target and result.evaluations_to_target is not None:
            break

    if settings.n_final_samples:
        with torch.no_grad():
            z = generator.prior.sample(settings.n_final_samples, generator=torch_generator, dtype=dtype)
            x, ladj_zx, ok = inverse_with_domain(generator, z)
            log_p = (generator.prior.log_prob(z) - ladj_zx).double().numpy()
        x, ok = x.double().numpy(), ok.numpy()
        u = np.full(len(x), np.inf)
        if ok.any():
            u[ok] = _energies(energy, torch.as_tensor(x[ok]))
            n_evals += int(ok.sum())
        result.samples = x
        result.log_weights = np.where(ok & np.isfinite(u), -u - log_p, -np.inf)
        result.ess = kish_ess(result.log_weights) if np.isfinite(result.log_weights).any() else 0.0
    result.n_energy_evaluations = n_evals
    return result
