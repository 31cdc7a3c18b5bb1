"""Temperature-annealed training by energy: from a hot, easy target down to the real one.

Training by energy alone (reverse KL) at the target temperature tends to find one
basin and stay there: the loss rewards a generator that covers *some* of the
Boltzmann distribution well.  At a high temperature the barriers are low and the
distribution broad, so reverse KL there covers every basin.  Temperature annealing
(Schopmans & Friederich, "Temperature-annealed Boltzmann generators", ICML 2025)
then walks the generator down a ladder of temperatures ``tau_0 > tau_1 > ... > 1``
(relative to the target's, ``T / T0``):

1. reverse KL at ``tau_0`` (:class:`~openmm_bg.training.TrainingConfig` with
   ``target_temperature = tau_0``);
2. for each next rung: draw ``n_samples`` from the generator (which represents
   ``tau_i``), weight them to ``tau_{i+1}`` with ``log w = -u_0(x) / tau_{i+1} - log p_X(x)``,
   resample them by weight, and train by example (maximum likelihood) on the resampled
   set.  Each rung costs ``n_samples`` energy evaluations, and no energy gradients;
3. optionally, reverse KL at ``tau = 1`` to finish.

The generator's prior keeps its width throughout: the flow itself learns each
temperature.  Every energy evaluation is counted.  A run saves a checkpoint after
each phase and, given the same checkpoint path, resumes after the last phase it
finished with the same result as an uninterrupted run (every phase draws from its
own seed).
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._validation import ensure_count
from ..analysis.reweighting import kish_ess
from ..generator.checkpoints import read_torch_file
from ..generator.model import BoltzmannGenerator
from .trainer import PRECISIONS, Trainer, TrainingConfig

__all__ = ["AnnealingSettings", "AnnealingResult", "anneal"]


@dataclass
class AnnealingSettings:
    """Settings of :func:`anneal`; every field can come from YAML.

    Attributes
    ----------
    temperatures : list of float
        The ladder ``tau_0 > tau_1 > ... > 1``, relative to the target temperature
        (``[4, 1]`` starts at 1200 K for a 300 K target).  It must fall strictly and end at 1.
    kl_iterations : int
        Reverse-KL steps at ``tau_0``.
    kl_batch_size : int
        Generator samples per reverse-KL step.
    kl_learning_rate : float
    n_samples : int
        Samples drawn, weighted and resampled at each rung (energy evaluations per rung).
    ml_iterations : int
        Maximum-likelihood steps on each rung's resampled set.
    batch_size : int
        Configurations per maximum-likelihood step.
    ml_learning_rate : float
    final_kl_iterations : int
        Reverse-KL steps at ``tau = 1`` after the last rung; 0 skips them.
    energy_cut : float or None
        See :func:`~openmm_bg.training.losses.linlog_cut`.
    min_ess : float
        Fraction of ``n_samples``: a rung whose weights have a smaller Kish ESS gets a
        warning that the step in temperature is too large for the generator.
    precision : str
        dtype of the network during training (see ``TrainingConfig.precision``).
    seed : int
    """

    temperatures: list = field(default_factory=lambda: [4.0, 2.8, 2.0, 1.5, 1.2, 1.0])
    kl_iterations: int = 1000
    kl_batch_size: int = 256
    kl_learning_rate: float = 1e-3
    n_samples: int = 20_000
    ml_iterations: int = 300
    batch_size: int = 512
    ml_learning_rate: float = 3e-4
    final_kl_iterations: int = 0
    energy_cut: float | None = 1e3
    min_ess: float = 0.01
    precision: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        try:
            ladder = [float(t) for t in self.temperatures]
        except (TypeError, ValueError):
            raise ValueError(f"temperatures must be a list of numbers, got {self.temperatures!r}") from None
        if not ladder or any(not (math.isfinite(t) and t > 0) for t in ladder):
            raise ValueError(f"temperatures must be positive numbers, got {self.temperatures!r}")
        if any(b >= a for a, b in zip(ladder, ladder[1:])):
            raise ValueError(f"temperatures must fall strictly from the hot start to 1, got {ladder}")
        if ladder[-1] != 1.0:
            raise ValueError(f"temperatures must end at 1 (the target temperature), got {ladder}; they are relative, T / T_target")
        self.temperatures = ladder
        for name, minimum in (("kl_iterations", 0), ("kl_batch_size", 1), ("n_samples", 2), ("ml_iterations", 1), ("batch_size", 1),
                              ("final_kl_iterations", 0), ("seed", 0)):
            setattr(self, name, ensure_count(getattr(self, name), name, minimum))
        for name in ("kl_learning_rate", "ml_learning_rate"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        if not 0 <= self.min_ess < 1:
            raise ValueError(f"min_ess must be a fraction in [0, 1), got {self.min_ess!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")

    def to_dict(self) -> dict:
        """Plain mapping of all settings, YAML-safe (what a checkpoint records)."""
        return dataclasses.asdict(self)

    def phases(self) -> list[tuple[str, float, float | None]]:
        """``(kind, tau, previous tau)`` of each phase: ``"kl"`` at the hot start, ``"rung"`` per step down, ``"final-kl"`` at 1."""
        out: list[tuple[str, float, float | None]] = []
        if self.kl_iterations:
            out.append(("kl", self.temperatures[0], None))
        out += [("rung", b, a) for a, b in zip(self.temperatures, self.temperatures[1:])]
        if self.final_kl_iterations:
            out.append(("final-kl", 1.0, None))
        return out


@dataclass
class AnnealingResult:
    """What :func:`anneal` did.

    Attributes
    ----------
    phases : list of dict
        One per phase: ``kind``, ``tau``, ``energy_evaluations``, and for a rung
        ``from_tau``, ``kish_ess`` (fraction of its samples) and ``n_finite``; for a KL
        phase ``final_kl`` (the loss of its last step).
    energy_evaluations : int
        All of them.
    resumed_phases : int
        Phases read from the checkpoint rather than run.
    """

    phases: list = field(default_factory=list)
    energy_evaluations: int = 0
    resumed_phases: int = 0


def _kl_phase(generator: BoltzmannGenerator, settings: AnnealingSettings, tau: float, n_iterations: int, seed: int) -> dict:
    config = TrainingConfig(
        n_iterations=n_iterations, w_ml=0.0, w_kl=1.0, kl_batch_size=settings.kl_batch_size, learning_rate=settings.kl_learning_rate,
        lr_schedule="cosine", min_learning_rate=settings.kl_learning_rate / 10, energy_cut=settings.energy_cut, nonfinite="drop",
        target_temperature=tau, precision=settings.precision, seed=seed,
    )
    trainer = Trainer(generator, config)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="iteration .* skipped the optimizer step", category=RuntimeWarning)
        trainer.train(progress=False)
    return {"kind": "kl", "tau": tau, "energy_evaluations": trainer.energy_evaluations, "final_kl": trainer.history[-1]["loss"],
            "n_skipped": trainer.n_skipped}


def _rung(generator: BoltzmannGenerator, settings: AnnealingSettings, tau: float, from_tau: float, seed: int) -> dict:
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sample = generator.sample(settings.n_samples, generator=rng, energy=lambda x: generator._require_target()(x) / tau)
    log_w = sample.log_weight.double().cpu().numpy()
    finite = np.isfinite(log_w)
    if not finite.any():
        raise ValueError(f"annealing from tau = {from_tau:g} to {tau:g}: no sample has a finite energy")
    ess = kish_ess(log_w)
    if ess < settings.min_ess:
        warnings.warn(
            f"annealing from tau = {from_tau:g} to {tau:g}: the weights' Kish ESS is {100 * ess:.2f} % of {settings.n_samples} samples; "
            "the step in temperature is too large for this generator (add rungs or train longer)",
            RuntimeWarning,
            stacklevel=3,
        )
    w = np.exp(log_w[finite] - log_w[finite].max())
    picked = np.random.default_rng(seed).choice(np.flatnonzero(finite), size=settings.n_samples, p=w / w.sum())
    config = TrainingConfig(
        n_iterations=settings.ml_iterations, batch_size=settings.batch_size, learning_rate=settings.ml_learning_rate, lr_schedule="cosine",
        min_learning_rate=settings.ml_learning_rate / 10, precision=settings.precision, seed=seed, validate_every=settings.ml_iterations,
    )
    Trainer(generator, config, data=sample.x[torch.as_tensor(picked)]).train(progress=False)
    return {"kind": "rung", "tau": tau, "from_tau": from_tau, "energy_evaluations": int(sample.in_domain.sum()), "kish_ess": ess,
            "n_finite": int(finite.sum())}


def anneal(
    generator: BoltzmannGenerator,
    settings: AnnealingSettings | None = None,
    checkpoint: str | os.PathLike | None = None,
    announce=None,
) -> AnnealingResult:
    """Train ``generator`` by energy alone, annealing from ``settings.temperatures[0]`` down to 1.

    Parameters
    ----------
    generator : BoltzmannGenerator
        With a target energy; trained in place.  For molecules, its coordinate
        normalisation must already be set (e.g. from a few hot configurations).
    settings : AnnealingSettings
    checkpoint : path, optional
        Written after each phase; if it exists, the run resumes after its last phase.
    announce : callable, optional
        Called with one line per phase.

    Returns
    -------
    AnnealingResult
    """
    settings = settings or AnnealingSettings()
    generator._require_target()
    result = AnnealingResult()
    path = None if checkpoint is None else Path(checkpoint)
    done = 0
    if path is not None and path.exists():
        state = read_torch_file(path, "annealing checkpoint")
        if not isinstance(state, dict) or state.get("settings") != settings.to_dict():
            raise ValueError(f"{path} is not a checkpoint of this annealing run (its settings differ); remove it or pass another path")
        generator.load_state_dict(state["model"])
        result.phases = list(state["phases"])
        done = result.resumed_phases = len(result.phases)
    for number, (kind, tau, from_tau) in enumerate(settings.phases()):
        if number < done:
            continue
        seed = settings.seed + 1000 * number
        if kind == "rung":
            record = _rung(generator, settings, tau, from_tau, seed)
        else:
            iterations = settings.kl_iterations if kind == "kl" else settings.final_kl_iterations
            record = _kl_phase(generator, settings, tau, iterations, seed)
            record["kind"] = kind
        result.phases.append(record)
        if announce is not None:
            extra = f", Kish ESS {100 * record['kish_ess']:.1f} %" if kind == "rung" else f", KL {record['final_kl']:.2f}"
            announce(f"annealing phase {number + 1} of {len(settings.phases())}: {kind} at tau = {tau:g}{extra}")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"settings": settings.to_dict(), "model": generator.state_dict(), "phases": result.phases}, path)
    result.energy_evaluations = sum(phase["energy_evaluations"] for phase in result.phases)
    return result
