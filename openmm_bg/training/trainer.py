"""Training loop: weighted ML / KL / RC losses with schedules, progress and exact resume.

The loss at iteration ``t`` is ``w_ML(t) J_ML + w_KL(t) mean_k J_KL(tau_k) + w_RC(t) J_RC + w_MCMC(t) J_MCMC``
(see :mod:`openmm_bg.training.losses`).  A batch whose energies are not all finite is
reported in the history and skipped (no optimizer step), so an infinite energy never
reaches the weights; with ``nonfinite="drop"`` the failed samples are left out instead.
All randomness comes from one ``torch.Generator`` owned by the trainer, saved in
checkpoints, so that a resumed run continues bit for bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._validation import ensure_count
from ..generator.checkpoints import read_torch_file
from ..generator.model import BoltzmannGenerator, check_finite
from .losses import MCMC_KINDS, kl_loss, mcmc_loss, ml_loss, rc_loss

__all__ = ["Schedule", "TrainingConfig", "Trainer", "read_settings", "write_settings", "unknown_keys", "PRECISIONS", "MAX_SEED"]

#: the dtypes a network can train in
PRECISIONS = {"float32": torch.float32, "float64": torch.float64}
#: the largest seed (torch.Generator.manual_seed takes 64-bit integers)
MAX_SEED = 2**63 - 1
#: a settings file holds a few dozen values, nested a few levels: anything far beyond is not settings
#: (a YAML alias bomb expands to 10**9 values, an alias inside its own anchor nests forever)
_MAX_SETTINGS_VALUES, _MAX_SETTINGS_DEPTH = 10_000, 20


def read_settings(path: str | Path, what: str) -> dict:
    """The mapping in the YAML file ``path``, or one clear one-line ``ValueError`` naming ``what`` (e.g. "training settings").

    An empty file is an empty mapping.  A file that is not UTF-8 text, not YAML, not a
    mapping, or that expands (through YAML aliases) to more than 10,000 values or 20
    levels of nesting is refused.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a text file of {what} (not UTF-8: {error.reason} at byte {error.start})") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {_one_line(error)}") from None
    except (ValueError, RecursionError) as error:  # PyYAML's int() of thousands of digits; nesting past the recursion limit
        raise ValueError(f"{path} is not valid YAML {what}: {_one_line(error) or type(error).__name__}") from None
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of {what}, got a {type(values).__name__}")
    _check_size(values, f"{path} ({what})")
    return values


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_size(values, where: str) -> None:
    """Refuse settings that expand to more values, or nest deeper, than settings do."""
    count = 0

    def visit(value, depth: int) -> None:
        nonlocal count
        count += 1
        if count > _MAX_SETTINGS_VALUES:
            raise ValueError(f"{where} holds more than {_MAX_SETTINGS_VALUES} values (YAML aliases that expand?); settings are a few dozen")
        if depth > _MAX_SETTINGS_DEPTH:
            raise ValueError(f"{where} nests more than {_MAX_SETTINGS_DEPTH} levels deep, or a YAML alias refers to its own anchor")
        for child in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
            visit(child, depth + 1)

    visit(values, 0)


def unknown_keys(values: Mapping, known) -> list:
    """The keys of ``values`` that are not among the names ``known`` (keys of any type, sorted by their text)."""
    known = set(known)
    return sorted((key for key in values if not (isinstance(key, str) and key in known)), key=repr)


def write_settings(values: dict, path: str | Path) -> Path:
    """Write a mapping of settings to the YAML file ``path`` (in the given key order); returns the path."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def _schedule_number(value) -> float:
    """One number of a schedule pair as a float; a bool or a container is a ``TypeError``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


class Schedule:
    """A loss weight as a function of the iteration: constant or piecewise linear.

    Parameters
    ----------
    spec : float or sequence of (iteration, value) pairs
        A number is a constant weight.  Pairs are interpolated linearly and held
        constant before the first and after the last iteration given.
    """

    def __init__(self, spec: float | Sequence[Sequence[float]]):
        if isinstance(spec, Schedule):
            spec = spec.spec
        if isinstance(spec, bool) or isinstance(spec, (str, bytes, Mapping)):
            raise ValueError(f"a schedule is a number or a list of [iteration, value] pairs, got {spec!r}")
        try:
            if isinstance(spec, numbers.Real):
                points = [(0.0, float(spec))]
            else:
                points = [(_schedule_number(t), _schedule_number(v)) for t, v in spec]
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"a schedule is a number or a list of [iteration, value] pairs, got {spec!r}") from None
        if not points or any(not math.isfinite(t) for t, _ in points) or any(b[0] <= a[0] for a, b in zip(points, points[1:])):
            raise ValueError(f"schedule iterations must be finite and strictly increasing, got {spec!r}")
        if any(not math.isfinite(v) or v < 0 for _, v in points):
            raise ValueError(f"loss weights must be finite and non-negative, got {spec!r}")
        self.spec = spec
        self._t = np.array([p[0] for p in points])
        self._v = np.array([p[1] for p in points])

    def __call__(self, iteration: int) -> float:
        return float(np.interp(iteration, self._t, self._v))

    def __repr__(self) -> str:
        return f"Schedule({self.spec!r})"

    @property
    def ever_positive(self) -> bool:
        """Whether the weight is non-zero at any iteration."""
        return bool((self._v > 0).any())


def _finite_number(value, name: str) -> float:
    """``value`` as a finite float (numbers, and strings ``float`` reads, as YAML 1.1 leaves "1e-3"), or a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


@dataclass
class TrainingConfig:
    """Settings of a training run; every field can come from a YAML file.

    Attributes
    ----------
    n_iterations : int
        Total number of optimizer steps.
    batch_size : int
        Training configurations per step for the ML loss.
    kl_batch_size : int
        Generator samples per step and temperature for the KL and RC losses.
    learning_rate : float
        Adam learning rate (the peak rate, with ``lr_schedule: cosine``).
    lr_schedule : str
        ``"constant"``, or ``"cosine"``: the rate falls from ``learning_rate`` to
        ``min_learning_rate`` along half a cosine over ``n_iterations``.  The rate is a
        function of the iteration alone, so a resumed run follows the same curve.
    min_learning_rate : float
        Final rate of the cosine schedule.
    weight_decay : float
        Decoupled weight decay (AdamW); 0 is plain Adam.  Helps against over-fitting a
        small trajectory.
    w_ml, w_kl, w_rc, w_mcmc : float or list of [iteration, weight]
        Loss weights (see :class:`Schedule`).  ``w_mcmc`` trains for moves
        (:func:`~openmm_bg.training.losses.mcmc_loss`): ``kl_batch_size`` moves per step,
        each from a training configuration, costing two energy evaluations.
    mcmc_kind : str
        The move ``w_mcmc`` trains for: ``"independence"`` (``BoltzmannGeneratorMove``) or
        ``"latent"`` (``LatentMetropolisMove``).
    mcmc_step_size : float
        Latent step of ``mcmc_kind: latent``.
    mcmc_distance_weight : float or None
        Weight of the squared jump in the MCMC loss; 0 trains for acceptance alone, None
        chooses by ``mcmc_kind`` (see :func:`~openmm_bg.training.losses.mcmc_loss`).
    temperatures : list of float
        Relative temperatures ``T / T0`` of the KL loss, averaged with equal weight.
    target_temperature : float
        Relative temperature of the distribution the generator is trained to represent by
        energy (the KL energies are divided by it; the prior keeps its width).  Above 1 it
        trains for a hot target, as temperature annealing starts (:mod:`openmm_bg.training.annealing`).
    energy_cut : float or None
        Energy (kT) above which the KL loss grows only logarithmically.
    rc_bandwidth : float
        Kernel width of the RC loss, in the units of the reaction coordinate.
    grad_clip : float or None
        Maximum gradient norm.
    nonfinite : str
        ``"skip"`` skips a step with any non-finite energy; ``"drop"`` leaves those samples out.
    seed : int
        Seed of the trainer's random generator.
    validate_every : int
        With validation data, the ML loss on it (``ml_validation`` in the history) is
        computed at iteration 0, every ``validate_every`` iterations and at the last one.
        A validation loss that rises while the training loss falls is over-fitting.
    keep : str
        ``"last"`` keeps the generator of the last step; ``"best"`` (with validation data)
        puts back, at the end of :meth:`Trainer.train`, the parameters of the validation with
        the lowest held-out loss; the last ones stay in ``Trainer.last_parameters``.
    patience : int or None
        Early stopping: end the run when the held-out loss has not improved for this many
        validations in a row; None trains all ``n_iterations``.
    overfit_warning : float or None
        Warn (once per run) when the held-out loss rises more than this many nats above its
        best: the generator is learning the training frames rather than the distribution.
    precision : str
        ``"float32"`` or ``"float64"``: the dtype of the network while :meth:`Trainer.train`
        runs.  float32 steps are about twice as fast and accurate enough for the gradients;
        afterwards the generator goes back to its own dtype (float64 for the molecular
        recipes), so that samples, log weights and free energies are computed in float64.
    """

    n_iterations: int = 1000
    batch_size: int = 256
    kl_batch_size: int = 256
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    min_learning_rate: float = 1e-5
    weight_decay: float = 0.0
    w_ml: float | list = 1.0
    w_kl: float | list = 0.0
    w_rc: float | list = 0.0
    w_mcmc: float | list = 0.0
    mcmc_kind: str = "independence"
    mcmc_step_size: float = 0.5
    mcmc_distance_weight: float | None = None
    temperatures: list = field(default_factory=lambda: [1.0])
    target_temperature: float = 1.0
    energy_cut: float | None = 1e3
    rc_bandwidth: float = 0.1
    grad_clip: float | None = 100.0
    nonfinite: str = "skip"
    seed: int = 0
    validate_every: int = 100
    keep: str = "last"
    patience: int | None = None
    overfit_warning: float | None = 1.0
    precision: str = "float32"

    def __post_init__(self):
        # YAML 1.1 (PyYAML) reads "1e-3" as a string; accept any spelling float() accepts, if finite
        for name in ("learning_rate", "min_learning_rate", "weight_decay", "rc_bandwidth", "energy_cut", "grad_clip", "mcmc_step_size", "mcmc_distance_weight", "target_temperature"):
            value = getattr(self, name)
            if value is None and name in ("energy_cut", "grad_clip", "mcmc_distance_weight"):
                continue
            setattr(self, name, _finite_number(value, name))
        for name, minimum in (("n_iterations", 1), ("batch_size", 1), ("kl_batch_size", 1), ("validate_every", 1), ("seed", 0)):
            setattr(self, name, ensure_count(getattr(self, name), name, minimum))
        if self.seed > MAX_SEED:
            raise ValueError(f"seed must be at most 2**63 - 1, got {self.seed}")
        for name in ("lr_schedule", "mcmc_kind", "keep", "precision", "nonfinite"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not (self.learning_rate > 0 and self.min_learning_rate >= 0 and self.weight_decay >= 0):
            raise ValueError(
                "learning_rate must be positive and min_learning_rate, weight_decay non-negative, got "
                f"{self.learning_rate!r}, {self.min_learning_rate!r}, {self.weight_decay!r}"
            )
        if self.mcmc_kind not in MCMC_KINDS:
            raise ValueError(f"mcmc_kind must be one of {list(MCMC_KINDS)}, got {self.mcmc_kind!r}")
        if not (self.mcmc_step_size > 0 and (self.mcmc_distance_weight is None or self.mcmc_distance_weight >= 0)):
            raise ValueError(f"mcmc_step_size must be positive and mcmc_distance_weight non-negative, got {self.mcmc_step_size}, {self.mcmc_distance_weight}")
        if self.keep not in ("last", "best"):
            raise ValueError(f"keep must be 'last' or 'best', got {self.keep!r}")
        if self.patience is not None:
            self.patience = ensure_count(self.patience, "patience", 1)
        if not self.rc_bandwidth > 0 or not (self.grad_clip is None or self.grad_clip > 0):
            raise ValueError(f"rc_bandwidth and grad_clip must be positive (grad_clip may be None), got {self.rc_bandwidth!r}, {self.grad_clip!r}")
        if self.overfit_warning is not None:
            if isinstance(self.overfit_warning, bool) or not isinstance(self.overfit_warning, numbers.Real) or not (math.isfinite(self.overfit_warning) and self.overfit_warning > 0):
                raise ValueError(f"overfit_warning must be a positive number of nats or None, got {self.overfit_warning!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        if self.nonfinite not in ("skip", "drop"):
            raise ValueError(f"nonfinite must be 'skip' or 'drop', got {self.nonfinite!r}")
        if (
            not isinstance(self.temperatures, (list, tuple)) or not self.temperatures
            or any(isinstance(t, bool) or not isinstance(t, numbers.Real) or not (math.isfinite(t) and t > 0) for t in self.temperatures)
        ):
            raise ValueError(f"temperatures must be a non-empty list of finite positive numbers, got {self.temperatures!r}")
        self.temperatures = [float(t) for t in self.temperatures]
        if not (math.isfinite(self.target_temperature) and self.target_temperature > 0):
            raise ValueError(f"target_temperature must be a positive number, got {self.target_temperature!r}")
        for name in ("w_ml", "w_kl", "w_rc", "w_mcmc"):
            Schedule(getattr(self, name))

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingConfig":
        """Build from a mapping (e.g. parsed YAML); unknown keys raise ``ValueError``."""
        if not isinstance(values, Mapping):
            raise ValueError(f"training settings must be a mapping, got a {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = unknown_keys(values, known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known settings are {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain mapping of all settings, YAML-safe."""
        return dataclasses.asdict(self)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainingConfig":
        """Read settings from a YAML mapping; missing keys keep their defaults, unknown keys raise."""
        return cls.from_dict(read_settings(path, "training settings"))

    def to_yaml(self, path: str | Path) -> Path:
        """Write every setting (defaults included) to a YAML file, e.g. next to a run's outputs."""
        return write_settings(self.to_dict(), path)


class Trainer:
    """Trains a :class:`BoltzmannGenerator` by example, by energy and along a reaction coordinate.

    Parameters
    ----------
    generator : BoltzmannGenerator
    config : TrainingConfig
    data : Tensor, shape (n_data, *event_shape), optional
        Training configurations for the ML loss; required if ``w_ml`` is ever non-zero.
    reaction_coordinate : callable, optional
        Differentiable map from configurations to shape (batch,); required if ``w_rc`` is ever non-zero.
    validation_data : Tensor, shape (n_validation, *event_shape), optional
        Held-out configurations, never trained on; their ML loss is recorded as
        ``ml_validation`` (see ``TrainingConfig.validate_every``).
    """

    def __init__(
        self,
        generator: BoltzmannGenerator,
        config: TrainingConfig | None = None,
        data: Tensor | None = None,
        reaction_coordinate: Callable[[Tensor], Tensor] | None = None,
        validation_data: Tensor | None = None,
    ):
        self.generator = generator
        self.config = config or TrainingConfig()
        self.schedules = {name: Schedule(getattr(self.config, f"w_{name}")) for name in ("ml", "kl", "rc", "mcmc")}
        self.data = None if data is None else self._as_data(data, "training data")
        self.validation_data = None if validation_data is None else self._as_data(validation_data, "validation data")
        self.reaction_coordinate = reaction_coordinate
        self._check_requirements()
        self.optimizer = torch.optim.AdamW(
            generator.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )
        self.rng = torch.Generator().manual_seed(self.config.seed)
        self.iteration = 0
        self.history: list[dict] = []
        self.energy_evaluations = 0
        #: lowest held-out loss so far, its iteration, and the parameters it was measured on
        self.best: dict = {"loss": math.inf, "iteration": None, "parameters": None}
        #: with ``keep: best``, the parameters of the last step, after :meth:`train` put the best back
        self.last_parameters: dict | None = None
        self.stopped_early = False
        self._warned_overfit = False
        self._since_best = 0  # validations since the best one, for patience

    def _as_data(self, data: Tensor, name: str) -> Tensor:
        data = self.generator._as_batch(data, name)
        check_finite(data, name)
        like = self.generator._param_like()
        return data.to(dtype=like.dtype, device=like.device)

    def validation_loss(self, chunk: int = 4096) -> float:
        """Mean negative log-likelihood of the validation data (no gradient); ``nan`` without it."""
        if self.validation_data is None:
            return float("nan")
        total = 0.0
        with torch.no_grad():
            for first in range(0, self.validation_data.shape[0], chunk):
                part = self.validation_data[first:first + chunk]
                total += float(ml_loss(self.generator, self._in_network_dtype(part))) * part.shape[0]
        return total / self.validation_data.shape[0]

    def _in_network_dtype(self, x: Tensor) -> Tensor:
        return x.to(self.generator._param_like().dtype)

    def _cast(self, dtype: torch.dtype) -> None:
        """The network and Adam's moment estimates in ``dtype`` (float32 values round-trip float64 exactly)."""
        self.generator.to(dtype)
        for state in self.optimizer.state.values():
            for key, value in state.items():
                if key != "step" and isinstance(value, Tensor) and value.is_floating_point():
                    state[key] = value.to(dtype)

    @contextlib.contextmanager
    def _in_precision(self, dtype: torch.dtype):
        """Run the block with the network in ``dtype``, then restore its dtype and its buffers bit for bit.

        Buffers are constants of the bijection (normalisation widths, constrained bond
        lengths): a float32 round trip would change them for good (pi would become
        float32(pi), and a normalised torsion's turn would no longer be one turn).
        """
        home = self.generator._param_like().dtype
        buffers = {name: value.clone() for name, value in self.generator.named_buffers() if value.is_floating_point()}
        self._cast(dtype)
        try:
            yield
        finally:
            self._cast(home)
            with torch.no_grad():
                for name, value in self.generator.named_buffers():
                    if name in buffers:
                        value.copy_(buffers[name])

    def _check_requirements(self) -> None:
        for name in ("ml", "mcmc"):
            if self.schedules[name].ever_positive and self.data is None:
                raise ValueError(f"w_{name} is non-zero but no training data was given")
        if (self.config.keep == "best" or self.config.patience is not None) and self.validation_data is None:
            raise ValueError("keep: best and patience need validation data (held-out frames)")
        if self.schedules["rc"].ever_positive and self.reaction_coordinate is None:
            raise ValueError("w_rc is non-zero but no reaction_coordinate was given")

    def learning_rate(self, iteration: int) -> float:
        """The learning rate at ``iteration`` (see ``TrainingConfig.lr_schedule``)."""
        cfg = self.config
        if cfg.lr_schedule == "constant":
            return cfg.learning_rate
        progress = min(iteration / max(cfg.n_iterations, 1), 1.0)
        return cfg.min_learning_rate + 0.5 * (cfg.learning_rate - cfg.min_learning_rate) * (1.0 + math.cos(math.pi * progress))

    def step(self) -> dict:
        """One optimizer step; returns the history row it appended."""
        cfg, t = self.config, self.iteration
        weights = {name: schedule(t) for name, schedule in self.schedules.items()}
        lr = self.learning_rate(t)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        row: dict = {"iteration": t, "lr": lr, **{f"w_{k}": v for k, v in weights.items()}}
        total = None
        if weights["ml"] > 0:
            index = torch.randint(0, self.data.shape[0], (cfg.batch_size,), generator=self.rng)
            j_ml = ml_loss(self.generator, self._in_network_dtype(self.data[index.to(self.data.device)]))
            row["ml"] = j_ml.item()
            total = weights["ml"] * j_ml
        n_nonfinite = 0
        if weights["kl"] > 0 or weights["rc"] > 0:
            kl_terms, rc_terms = [], []
            for tau in cfg.temperatures:
                term = kl_loss(self.generator, cfg.kl_batch_size, tau, cfg.energy_cut, self.rng, cfg.nonfinite == "drop", cfg.target_temperature)
                self.energy_evaluations += cfg.kl_batch_size + (term.x.shape[0] if term.n_nonfinite and cfg.nonfinite == "drop" else 0)
                n_nonfinite += term.n_nonfinite
                kl_terms.append(term.loss)
                if weights["rc"] > 0:
                    rc_terms.append(rc_loss(term.x, self.reaction_coordinate, cfg.rc_bandwidth))
            j_kl = torch.stack(kl_terms).mean()
            row["kl"] = j_kl.item()
            if weights["kl"] > 0:
                total = weights["kl"] * j_kl if total is None else total + weights["kl"] * j_kl
            if rc_terms:
                j_rc = torch.stack(rc_terms).mean()
                row["rc"] = j_rc.item()
                total = weights["rc"] * j_rc if total is None else total + weights["rc"] * j_rc
        if weights["mcmc"] > 0:
            index = torch.randint(0, self.data.shape[0], (cfg.kl_batch_size,), generator=self.rng)
            term = mcmc_loss(
                self.generator, self._in_network_dtype(self.data[index.to(self.data.device)]), cfg.mcmc_kind,
                cfg.mcmc_step_size, cfg.mcmc_distance_weight, cfg.energy_cut, self.rng,
            )
            self.energy_evaluations += term.n_energies
            row["mcmc"], row["mcmc_acceptance"] = term.loss.item(), term.acceptance
            total = weights["mcmc"] * term.loss if total is None else total + weights["mcmc"] * term.loss
        row["n_nonfinite"] = n_nonfinite
        skip = total is None or (n_nonfinite > 0 and cfg.nonfinite == "skip") or not torch.isfinite(total)
        if total is not None and not skip:
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            grads = [p.grad for p in self.generator.parameters() if p.grad is not None]
            if not all(torch.isfinite(g).all() for g in grads):
                skip = True
            else:
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.generator.parameters(), cfg.grad_clip)
                self.optimizer.step()
        if skip and total is not None:
            warnings.warn(
                f"iteration {t}: skipped the optimizer step ({n_nonfinite} non-finite energies, loss {total.item()})",
                RuntimeWarning,
                stacklevel=2,
            )
        row["loss"] = total.item() if total is not None else float("nan")
        row["skipped"] = bool(skip)
        if self.validation_data is not None and (t % cfg.validate_every == 0 or t == cfg.n_iterations - 1):
            # after this step's update, so the last row describes the trained generator
            row["ml_validation"] = self.validation_loss()
            self._track_validation(row["ml_validation"], t)
        self.history.append(row)
        self.iteration += 1
        return row

    def _track_validation(self, loss: float, iteration: int) -> None:
        """Remember the best held-out loss and its parameters; warn on over-fitting; decide early stopping."""
        if loss < self.best["loss"]:
            parameters = {name: p.detach().clone() for name, p in self.generator.named_parameters()}
            self.best = {"loss": loss, "iteration": iteration, "parameters": parameters}
            self._since_best = 0
            return
        self._since_best += 1
        cfg = self.config
        if cfg.overfit_warning is not None and loss > self.best["loss"] + cfg.overfit_warning and not self._warned_overfit:
            self._warned_overfit = True
            warnings.warn(
                f"iteration {iteration}: the held-out loss {loss:.2f} is {loss - self.best['loss']:.2f} nats above its best "
                f"({self.best['loss']:.2f} at iteration {self.best['iteration']}): the generator is over-fitting the training frames"
                + ("" if cfg.keep == "best" else "; keep: best would keep the best generator"),
                RuntimeWarning,
                stacklevel=3,
            )
        if cfg.patience is not None and self._since_best >= cfg.patience:
            self.stopped_early = True

    def _restore_best(self) -> None:
        with torch.no_grad():
            self.last_parameters = {name: p.detach().clone() for name, p in self.generator.named_parameters()}
            for name, p in self.generator.named_parameters():
                p.copy_(self.best["parameters"][name])

    def train(self, n_iterations: int | None = None, progress: bool = True) -> list[dict]:
        """Run until ``n_iterations`` steps in total have been made (default ``config.n_iterations``).

        The network runs in ``config.precision`` meanwhile and returns to its own dtype at
        the end.  With ``keep: best`` the best parameters are put back at the end (and a
        later call goes on from the last ones).  Returns the history (one dict per iteration: weights, loss terms,
        skipped, n_nonfinite).
        """
        target = self.config.n_iterations if n_iterations is None else ensure_count(n_iterations, "n_iterations", 0)
        if self.last_parameters is not None:  # keep: best put the best back; training goes on from the last
            with torch.no_grad():
                for name, p in self.generator.named_parameters():
                    p.copy_(self.last_parameters[name])
            self.last_parameters = None
        bar = tqdm(total=target, initial=self.iteration, disable=not progress, desc="training", leave=False)
        self.generator.train()
        try:
            with self._in_precision(PRECISIONS[self.config.precision]):
                while self.iteration < target and not self.stopped_early:
                    row = self.step()
                    bar.update(1)
                    if self.iteration % 10 == 0:
                        bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss", "ml", "kl", "rc", "mcmc") if k in row})
        finally:
            bar.close()
            self.generator.eval()
        if self.config.keep == "best" and self.best["parameters"] is not None:
            self._restore_best()
        return self.history

    @property
    def n_skipped(self) -> int:
        """Number of steps skipped because of non-finite energies, losses or gradients."""
        return sum(row["skipped"] for row in self.history)

    def history_array(self, key: str) -> np.ndarray:
        """One column of the history as a float array (``nan`` where the term was not computed)."""
        return np.array([row.get(key, np.nan) for row in self.history], dtype=float)

    def state_dict(self) -> dict:
        """Everything needed to resume: model, optimizer, random state, iteration and history."""
        return {
            "model": self.generator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng_state": self.rng.get_state(),
            "iteration": self.iteration,
            "history": self.history,
            "energy_evaluations": self.energy_evaluations,
            "config": self.config.to_dict(),
            "best": self.best,
            "last_parameters": self.last_parameters,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state from :meth:`state_dict`."""
        self.generator.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.set_state(state["rng_state"])
        self.iteration = int(state["iteration"])
        self.history = list(state["history"])
        self.energy_evaluations = int(state.get("energy_evaluations", 0))
        if "best" in state:
            self.best = state["best"]
            self.last_parameters = state.get("last_parameters")

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write :meth:`state_dict` to ``path`` with ``torch.save``; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Resume from a file written by :meth:`save_checkpoint`."""
        state = read_torch_file(path, "checkpoint")
        if not isinstance(state, dict):
            raise ValueError(f"{path} holds a {type(state).__name__}, not a Trainer checkpoint")
        missing = {"model", "optimizer", "rng_state", "iteration", "history"} - set(state)
        if missing:
            raise ValueError(f"checkpoint {path} lacks {sorted(missing)}; it was not written by Trainer.save_checkpoint")
        self.load_state_dict(state)
