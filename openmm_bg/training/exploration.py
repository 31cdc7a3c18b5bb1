"""Adaptive exploration: train a generator while it samples.

The loop follows the adaptive sampling of Noé, Olsson, Köhler & Wu, Science 365,
eaaw1147 (2019).

Starting from one configuration:

0. short Cartesian random-walk Metropolis chains from it fill a buffer (and give the
   internal-coordinate normalisation its spread); with ``target_acceptance`` set,
   their step size adapts during the warm-up;
1. draw a batch from the buffer;
2. train the generator on the batch: maximum likelihood (``w_ml``) and, optionally,
   reverse KL by energy (``w_kl``) at the relative temperatures ``kl_temperatures``,
   with energies cut by :func:`~openmm_bg.training.losses.linlog_cut` and non-finite samples
   dropped.  The energy is what pushes generator samples into new basins; ML alone
   only follows the buffer;
3. propose latent Metropolis steps ``z' = T_xz(x) + s N(0, I)`` for each member;
4. accept or reject with the energy and both Jacobians
   (:func:`~openmm_bg.moves.latent_log_acceptance`); with ``target_acceptance`` set,
   ``log s`` moves towards it after every sweep (Robbins-Monro);
5. put the accepted configurations back into the buffer in place of their origin;
6. repeat.

With the generator and ``s`` fixed, every buffer slot is an exact Metropolis chain
at the relative temperature ``temperature`` (1 by default); both change between
iterations, so the buffer is only approximately at equilibrium.  Chains above the
reference temperature cross barriers more easily: on alanine dipeptide, chains at
900 K reach the phi > 0 basin from one phi < 0 configuration within minutes
(tests/test_exploration_ala2.py), while at 300 K they had not after 2000
iterations.  At the end the final generator draws fresh samples
(:meth:`BoltzmannGenerator.sample <openmm_bg.generator.BoltzmannGenerator.sample>`)
that are reweighted to equilibrium with ``log w = -u(x) - log p(x)``.

Every target-energy evaluation is counted: warm-up, training (KL), latent proposals
and final samples, separately and in total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .._validation import ensure_count
from ..analysis.reweighting import kish_ess
from ..coordinates import GuardedCoordinates, InternalCoordinateNormalization
from ..generator.model import BoltzmannGenerator, failed_as_inf
from ..moves.latent import latent_log_acceptance
from ..moves.proposals import generator_dtype, inverse_with_domain, place_in_frame, rigid_frame_atoms
from .losses import linlog_cut

__all__ = ["ExplorationSettings", "ExplorationResult", "explore"]

_NON_NEGATIVE = ("warmup_steps", "n_final_samples", "n_iterations", "independence_steps")


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
        Initial latent step ``s`` (latent units; the prior has unit width).
    mcmc_steps : int
        Latent Metropolis sweeps over the batch per iteration.
    independence_steps : int
        Independence Metropolis-Hastings sweeps over the batch per iteration, after the
        latent ones: each member is offered a fresh generator sample ``x'`` and takes it
        with ``min{1, exp(-[u(x') - u(x)]) p(x) / p(x')}``.  These are the large jumps
        that a generator trained by energy makes possible; 0 disables them.
    temperature : float
        Relative temperature ``T / T0`` at which the buffer chains sample
        (``exp(-u / temperature)``, ``u`` reduced at ``T0``).  Above 1 the chains cross
        barriers more easily; the final samples are still reweighted to ``T0``.
    target_acceptance : float or None
        Acceptance rate that the warm-up step and ``s`` adapt towards; ``None`` keeps both fixed.
    warmup_steps : int
        Cartesian random-walk Metropolis steps of every buffer chain before training.
    warmup_step_size : float, nm
        Initial standard deviation of each Cartesian coordinate's warm-up step.
    w_ml, w_kl : float
        Weights of the maximum-likelihood loss on the batch and of the KL loss.
    kl_temperatures : sequence of float
        Relative temperatures ``T / T0`` of the KL loss (averaged with equal weight).
    kl_batch_size : int
        Generator samples per temperature and optimiser step for the KL loss.
    energy_cut : float or None, kT
        Energies above it enter the KL loss logarithmically (:func:`~openmm_bg.training.losses.linlog_cut`).
    grad_clip : float or None
        Maximum gradient norm of an optimiser step.
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
    mcmc_steps: int = 1
    independence_steps: int = 0
    temperature: float = 1.0
    target_acceptance: float | None = None
    warmup_steps: int = 50
    warmup_step_size: float = 0.0005
    w_ml: float = 1.0
    w_kl: float = 0.0
    kl_temperatures: Sequence[float] = (1.0,)
    kl_batch_size: int = 128
    energy_cut: float | None = 1e3
    grad_clip: float | None = 100.0
    n_final_samples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_iterations", "buffer_size", "batch_size", "train_steps", "mcmc_steps", "independence_steps", "warmup_steps", "kl_batch_size", "n_final_samples"):
            setattr(self, name, ensure_count(getattr(self, name), name, minimum=0 if name in _NON_NEGATIVE else 1))
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed buffer_size ({self.buffer_size})")
        for name in ("learning_rate", "step_size", "warmup_step_size", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.target_acceptance is not None and not 0 < self.target_acceptance < 1:
            raise ValueError(f"target_acceptance must lie in (0, 1) or be None, got {self.target_acceptance!r}")
        for name in ("w_ml", "w_kl"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite non-negative weight, got {value!r}")
        if self.w_ml == 0 and self.w_kl == 0:
            raise ValueError("w_ml and w_kl are both 0: the generator would never be trained")
        temperatures = list(self.kl_temperatures)
        if not temperatures or any(not (math.isfinite(t) and t > 0) for t in temperatures):
            raise ValueError(f"kl_temperatures must be a non-empty list of positive numbers, got {self.kl_temperatures!r}")
        self.kl_temperatures = [float(t) for t in temperatures]
        for name in ("energy_cut", "grad_clip"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be finite or None, got {value!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip!r}")


@dataclass
class ExplorationResult:
    """What :func:`explore` returns.

    Attributes
    ----------
    buffer : ndarray, shape (buffer_size, n_atoms, 3), float64, nm
    buffer_energies : ndarray, shape (buffer_size,), float64, kT
    history : list of dict
        Per iteration: ``iteration``, ``acceptance`` (of the latent steps), ``step_size``,
        ``loss``, ``ml`` and ``kl`` (NaN where not computed), ``n_nonfinite`` (KL samples
        dropped), ``n_energy_evaluations`` (cumulative, all kinds) and ``in_target``
        (buffer fraction in the target state).
    evaluations : dict of str to int
        Target-energy evaluations by kind: ``warmup``, ``training`` (KL samples, counted
        each time they are evaluated), ``sampling`` (latent proposals in the domain)
        and ``final`` (final samples).
    evaluations_to_target : int or None
        Cumulative evaluations (all kinds) when an accepted configuration first entered
        the target state.
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
    evaluations: dict[str, int] = field(default_factory=lambda: dict(warmup=0, training=0, sampling=0, final=0))
    evaluations_to_target: int | None = None
    samples: np.ndarray | None = None
    log_weights: np.ndarray | None = None
    ess: float = float("nan")

    @property
    def n_energy_evaluations(self) -> int:
        """All target-energy evaluations made (the sum of :attr:`evaluations`)."""
        return int(sum(self.evaluations.values()))


def _energies(energy: Callable[[Tensor], Tensor], x: Tensor) -> np.ndarray:
    """Reduced energies (kT) without gradients, shape (batch,) float64; a failed one is ``+inf``."""
    with torch.no_grad():
        return failed_as_inf(energy(x)).detach().double().cpu().numpy()


def _adapted(step: float, acceptance: float, target: float | None, gain: float) -> float:
    """Robbins-Monro update of a step size on the log scale towards ``target`` acceptance."""
    return step if target is None else step * math.exp(gain * (acceptance - target))


def _warm_up(energy, x0: np.ndarray, settings: ExplorationSettings, rng: np.random.Generator, result: ExplorationResult) -> tuple[np.ndarray, np.ndarray]:
    buffer = np.repeat(x0[None], settings.buffer_size, axis=0)
    u = _energies(energy, torch.as_tensor(buffer[:1]))
    result.evaluations["warmup"] += 1
    if not np.isfinite(u[0]):
        raise ValueError("the starting configuration has a non-finite energy")
    u = np.repeat(u, settings.buffer_size)
    step = settings.warmup_step_size
    for sweep in range(settings.warmup_steps):
        trial = buffer + step * rng.standard_normal(buffer.shape)
        u_trial = _energies(energy, torch.as_tensor(trial))
        result.evaluations["warmup"] += len(trial)
        accept = np.log(rng.random(len(trial))) < -(u_trial - u) / settings.temperature
        buffer[accept], u[accept] = trial[accept], u_trial[accept]
        step = _adapted(step, float(accept.mean()), settings.target_acceptance, 1.0 / math.sqrt(1.0 + sweep))
    return buffer, u


def _refit_normalization(generator: BoltzmannGenerator, x: Tensor) -> None:
    for layer in generator.flow.modules():
        if isinstance(layer, GuardedCoordinates):
            with torch.no_grad():
                fitted = InternalCoordinateNormalization.fit(layer.transform.forward(x)[0], layer.transform.circular)
            layer.normalization.load_state_dict(fitted.state_dict())


def _kl_loss(generator: BoltzmannGenerator, energy: Callable[[Tensor], Tensor], settings: ExplorationSettings, torch_generator: torch.Generator, result: ExplorationResult) -> tuple[Tensor | None, int]:
    """Mean over ``kl_temperatures`` of ``E[linlog_cut(u / tau) + log p]``, non-finite samples left out.

    Energies are first evaluated without gradients to find the failures, then again with
    gradients on the finite samples only (so that no failed force reaches the weights);
    both evaluations are counted.  Returns ``(loss or None if no sample was usable, n_dropped)``.
    """
    terms, n_dropped = [], 0
    for tau in settings.kl_temperatures:
        x, z, log_prob = generator.propose(settings.kl_batch_size, tau, generator=torch_generator, with_grad=True)
        # propose marks the rows outside the principal domain with a NaN density
        usable = torch.isfinite(log_prob)
        u = np.full(len(z), np.inf)
        if usable.any():
            u[usable.numpy()] = _energies(energy, x[usable].detach())
            result.evaluations["training"] += int(usable.sum())
        usable &= torch.as_tensor(np.isfinite(u))
        n_dropped += int((~usable).sum())
        if not usable.any():
            continue
        log_p = log_prob[usable]
        u_grad = energy(x[usable]) / tau
        result.evaluations["training"] += int(usable.sum())
        terms.append((linlog_cut(u_grad, settings.energy_cut) + log_p).mean())
    return (torch.stack(terms).mean() if terms else None), n_dropped


def _train_step(generator, energy, batch: Tensor, settings, optimizer, torch_generator, result) -> dict:
    row: dict = dict(ml=float("nan"), kl=float("nan"), n_nonfinite=0)
    total = None
    if settings.w_ml > 0:
        ml = -generator.log_prob(batch).mean()
        row["ml"] = float(ml.detach())
        total = settings.w_ml * ml
    if settings.w_kl > 0:
        kl, row["n_nonfinite"] = _kl_loss(generator, energy, settings, torch_generator, result)
        if kl is not None:
            row["kl"] = float(kl.detach())
            total = settings.w_kl * kl if total is None else total + settings.w_kl * kl
    row["loss"] = float(total.detach()) if total is not None else float("nan")
    if total is None or not torch.isfinite(total):
        return row
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    parameters = [p for p in generator.parameters() if p.grad is not None]
    if all(torch.isfinite(p.grad).all() for p in parameters):
        if settings.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(parameters, settings.grad_clip)
        optimizer.step()
    return row


def _metropolis_sweep(
    kind: str,
    generator: BoltzmannGenerator,
    energy: Callable[[Tensor], Tensor],
    buffer: np.ndarray,
    u_buffer: np.ndarray,
    index: np.ndarray,
    step_size: float,
    temperature: float,
    frame: tuple[int, int, int] | None,
    rng: np.random.Generator,
    torch_generator: torch.Generator,
    result: ExplorationResult,
) -> np.ndarray:
    """One Metropolis-Hastings step of the buffer members ``index``, updating ``buffer`` in place.

    ``kind`` is ``"latent"`` (``z' = T_xz(x) + s N(0, I)``, accepted with
    :func:`latent_log_acceptance`) or ``"independence"`` (``z'`` from the prior, accepted
    with the generator density ratio).  Returns the accepted mask, shape (len(index),).
    """
    dtype = generator_dtype(generator)
    with torch.no_grad():
        z, ladj_xz = generator.flow.forward(torch.as_tensor(buffer[index], dtype=dtype))
        if kind == "latent":
            z_new = generator.prior.wrap(z + step_size * torch.randn(z.shape, generator=torch_generator, dtype=dtype))
        else:
            z_new = generator.prior.sample(len(index), generator=torch_generator, dtype=dtype)
        x_new, ladj_zx, ok = inverse_with_domain(generator, z_new)
        log_prior_old = generator.prior.log_prob(z).double().numpy()
        log_prior_new = generator.prior.log_prob(z_new).double().numpy()
    x_new, ok = x_new.double().numpy(), ok.numpy()
    if frame is not None and ok.any():
        x_new[ok] = place_in_frame(x_new[ok], buffer[index][ok], frame)
    u_new = np.full(len(index), np.inf)
    if ok.any():
        u_new[ok] = _energies(energy, torch.as_tensor(x_new[ok]))
        result.evaluations["sampling"] += int(ok.sum())
    log_ratio = latent_log_acceptance(u_buffer[index] / temperature, u_new / temperature, ladj_xz, ladj_zx)
    if kind == "independence":
        # log p(x) - log p(x') adds the prior terms to the two Jacobians of the latent ratio
        log_ratio = log_ratio + log_prior_old - log_prior_new
    accept = ok & np.isfinite(log_ratio) & (np.log(rng.random(len(index))) < np.nan_to_num(log_ratio, nan=-np.inf))
    buffer[index[accept]], u_buffer[index[accept]] = x_new[accept], u_new[accept]
    return accept


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
        :func:`~openmm_bg.generator.recipes.molecular_generator` builds) is refitted to the warm-up buffer.
    energy : callable
        Reduced target energy in kT: Tensor (batch, n_atoms, 3) nm -> Tensor (batch,),
        non-finite where it fails (e.g. :class:`~openmm_bg.energies.OpenMMEnergy`).
        With ``settings.w_kl > 0`` it must be differentiable (forces as the backward pass).
    x0 : ndarray, shape (n_atoms, 3), nm
        The single starting configuration.
    settings : ExplorationSettings, optional
    target : callable, optional
        ``target(positions (n, n_atoms, 3) nm) -> bool (n,)``: a state to watch for.
        Only configurations accepted into the buffer count, not KL training samples.
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
    if not np.all(np.isfinite(x0)):
        raise ValueError("x0 holds non-finite positions")
    rng = np.random.default_rng(settings.seed)
    torch_generator = torch.Generator().manual_seed(settings.seed)
    dtype = generator_dtype(generator)
    frame = rigid_frame_atoms(generator)

    result = ExplorationResult(buffer=np.empty(0), buffer_energies=np.empty(0))
    buffer, u_buffer = _warm_up(energy, x0, settings, rng, result)
    result.buffer, result.buffer_energies = buffer, u_buffer
    _refit_normalization(generator, torch.as_tensor(buffer, dtype=dtype))
    optimizer = torch.optim.Adam([p for p in generator.parameters() if p.requires_grad], lr=settings.learning_rate)
    step_size = settings.step_size

    def check_target(x: np.ndarray) -> None:
        if target is not None and result.evaluations_to_target is None and len(x) and np.any(target(x)):
            result.evaluations_to_target = result.n_energy_evaluations

    check_target(buffer)
    generator.train()
    for iteration in range(settings.n_iterations):
        index = rng.choice(settings.buffer_size, settings.batch_size, replace=False)
        batch = torch.as_tensor(buffer[index], dtype=dtype)
        for _ in range(settings.train_steps):
            row = _train_step(generator, energy, batch, settings, optimizer, torch_generator, result)
        accepted = dict(latent=0, independence=0)
        used_step = step_size
        for kind, n_sweeps in (("latent", settings.mcmc_steps), ("independence", settings.independence_steps)):
            for _ in range(n_sweeps):
                accept = _metropolis_sweep(kind, generator, energy, buffer, u_buffer, index, step_size, settings.temperature, frame, rng, torch_generator, result)
                check_target(buffer[index[accept]])
                accepted[kind] += int(accept.sum())
                if kind == "latent":
                    used_step = step_size
                    step_size = _adapted(step_size, float(accept.mean()), settings.target_acceptance, 1.0 / math.sqrt(1.0 + iteration))
        entry = dict(
            iteration=iteration,
            acceptance=accepted["latent"] / (len(index) * settings.mcmc_steps),
            independence_acceptance=accepted["independence"] / (len(index) * settings.independence_steps) if settings.independence_steps else float("nan"),
            step_size=used_step,
            **row,
            n_energy_evaluations=result.n_energy_evaluations,
            in_target=float(np.mean(target(buffer))) if target is not None else float("nan"),
        )
        result.history.append(entry)
        if progress is not None:
            progress(entry)
        if stop_at_target and result.evaluations_to_target is not None:
            break
    generator.eval()

    if settings.n_final_samples:
        final = generator.sample(settings.n_final_samples, generator=torch_generator, energy=energy)
        result.evaluations["final"] += int(final.in_domain.sum())
        result.samples = final.x.detach().double().cpu().numpy()
        result.log_weights = final.log_weight.detach().double().cpu().numpy()
        result.ess = kish_ess(result.log_weights) if np.isfinite(result.log_weights).any() else 0.0
    return result
