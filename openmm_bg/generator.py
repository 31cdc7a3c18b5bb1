"""The Boltzmann generator: a prior, an invertible flow and a target energy."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from .distributions import NormalPrior
from .energies.base import Energy, as_energy
from .flows.base import Bijection

__all__ = ["GeneratorSample", "BoltzmannGenerator", "check_finite", "save_generator", "load_generator", "read_torch_file", "CHECKPOINT_FORMAT"]


def check_finite(x: Tensor, name: str = "x") -> None:
    """Raise a ``ValueError`` naming how many entries of ``x`` are NaN or infinite."""
    bad = ~torch.isfinite(x)
    if bad.any():
        rows = bad.reshape(x.shape[0], -1).any(dim=1) if x.ndim > 1 else bad
        raise ValueError(f"{name} holds non-finite values (NaN or inf) in {int(rows.sum())} of {x.shape[0]} configurations")


@dataclass
class GeneratorSample:
    """Configurations drawn from a Boltzmann generator, with everything needed to reweight them.

    Attributes
    ----------
    x : Tensor, shape (n, *event_shape)
        Configurations (nm for molecules).
    z : Tensor, shape (n, latent_dim)
        The latent vectors they came from.
    log_prob : Tensor, shape (n,)
        Log density of the generator at ``x``, ``log p_X(x) = log q_Z(z) + log|det dz/dx|``.
    energy : Tensor, shape (n,)
        Reduced target energy ``u(x)`` in kT; ``+inf`` where it could not be computed.
    log_weight : Tensor, shape (n,)
        Unnormalised log importance weight ``-u(x) - log p_X(x)``; ``-inf`` where the energy is ``+inf``.
    """

    x: Tensor
    z: Tensor
    log_prob: Tensor
    energy: Tensor
    log_weight: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def finite(self) -> Tensor:
        """Boolean mask, shape (n,): samples whose energy is finite."""
        return torch.isfinite(self.energy)

    def numpy(self) -> dict[str, np.ndarray]:
        """All fields as float64 numpy arrays."""
        return {f.name: getattr(self, f.name).detach().cpu().double().numpy() for f in fields(self)}


class BoltzmannGenerator(nn.Module):
    """A prior, an invertible flow and a target energy.

    Sampling draws ``z`` from the prior and maps it to configurations with
    ``flow.inverse``; densities use ``flow.forward`` (configuration -> latent).

    Parameters
    ----------
    prior : NormalPrior
        Latent distribution; its ``dim`` is the flow's latent size.
    flow : Bijection
        Maps configurations (batch, *event_shape) to latents (batch, prior.dim).
    energy : Energy, callable or None
        Reduced target energy at the reference temperature; a plain callable maps a
        tensor (batch, *event_shape) to (batch,).  ``None`` gives a generator that can
        propose configurations and evaluate its own density (what an MCMC move needs)
        but not compute energies or weights.
    event_shape : tuple of int, optional
        Shape of one configuration; taken from ``energy`` when it is an :class:`Energy`.
    """

    def __init__(
        self,
        prior: NormalPrior,
        flow: Bijection,
        energy: Energy | Callable[[Tensor], Tensor] | None,
        event_shape: tuple[int, ...] | None = None,
    ):
        super().__init__()
        if not isinstance(prior, NormalPrior):
            raise TypeError(f"prior must be a NormalPrior, got {type(prior).__name__}")
        if not isinstance(flow, Bijection):
            raise TypeError(f"flow must be a Bijection, got {type(flow).__name__}")
        if event_shape is None:
            if not isinstance(energy, Energy):
                raise ValueError("event_shape is required when energy is a plain callable")
            event_shape = tuple(energy.event_shape)
        self.prior = prior
        self.flow = flow
        self.event_shape = tuple(int(s) for s in event_shape)
        self.target = None if energy is None else as_energy(energy, self.event_shape)

    @property
    def dim(self) -> int:
        """Number of latent dimensions."""
        return self.prior.dim

    def _param_like(self) -> Tensor:
        for tensor in list(self.flow.parameters()) + list(self.flow.buffers()):
            if tensor.is_floating_point():
                return tensor
        return torch.zeros(())

    def _as_batch(self, x: Tensor, name: str = "x") -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        n_event = int(np.prod(self.event_shape))
        if x.ndim < 1 or (tuple(x.shape[1:]) != self.event_shape and tuple(x.shape[1:]) != (n_event,)):
            raise ValueError(f"{name} must have shape (batch, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], *self.event_shape)

    def _require_target(self) -> Energy:
        if self.target is None:
            raise ValueError("this generator has no target energy; build it with energy=... to compute energies and weights")
        return self.target

    def energy(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """Reduced target energy at relative temperature ``tau``: ``u_0(x) / tau``, shape (batch,)."""
        return self._require_target()(self._as_batch(x)) / temperature

    def log_prob(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """Log density of the generator at configurations ``x``, shape (batch,).

        Raises ``ValueError`` for non-finite input.
        """
        x = self._as_batch(x)
        check_finite(x, "x")
        z, ladj = self.flow.forward(x)
        return self.prior.log_prob(z, temperature) + ladj

    def propose(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        with_grad: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Draw ``n`` configurations without evaluating the target energy.

        Returns
        -------
        x : Tensor, shape (n, *event_shape)
        z : Tensor, shape (n, latent_dim)
        log_prob : Tensor, shape (n,)
            Generator log density at ``x``.
        """
        like = self._param_like()
        with torch.set_grad_enabled(with_grad):
            z = self.prior.sample(n, temperature, generator=generator, dtype=like.dtype, device=like.device)
            x, ladj_zx = self.flow.inverse(z)
            return x.reshape(n, *self.event_shape), z, self.prior.log_prob(z, temperature) - ladj_zx

    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        with_grad: bool = False,
    ) -> GeneratorSample:
        """Draw ``n`` configurations with their densities, energies and log weights.

        Parameters
        ----------
        n : int
        temperature : float
            Relative temperature ``T / T0``: the prior widens by ``sqrt(tau)`` and the
            target energy is ``u_0 / tau``.
        generator : torch.Generator, optional
            Source of randomness for the prior.
        with_grad : bool
            Keep the autograd graph (for training); by default sampling runs under ``no_grad``.

        Returns
        -------
        GeneratorSample
        """
        target = self._require_target()
        x, z, log_prob = self.propose(n, temperature, generator, with_grad)
        with torch.set_grad_enabled(with_grad):
            u = target(x) / temperature
            # The energy contract reports failures as +inf; a NaN from an analytic energy is the same failure.
            u = torch.where(torch.isnan(u), torch.full_like(u, float("inf")), u)
            # a sample outside the flow's domain has NaN positions and log_prob; its weight is zero, not NaN
            log_weight = torch.where(torch.isfinite(u), -u - log_prob, torch.full_like(u, -float("inf")))
        return GeneratorSample(x=x, z=z, log_prob=log_prob, energy=u, log_weight=log_weight)


#: format tag written into every generator checkpoint
CHECKPOINT_FORMAT = "openmm_bg.generator/1"


def _import_builder(path: str) -> Callable[..., BoltzmannGenerator]:
    module_name, _, attribute = path.rpartition(".")
    if not module_name.startswith("openmm_bg") and module_name.split(".")[0] not in _TRUSTED_BUILDER_PACKAGES:
        raise ValueError(f"generator builder {path!r} is outside openmm_bg; register its package in openmm_bg.generator._TRUSTED_BUILDER_PACKAGES")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import generator builder {path!r}: {error}") from error


#: top-level packages, besides openmm_bg, whose builders load_generator may import
_TRUSTED_BUILDER_PACKAGES: set[str] = set()


def save_generator(generator: BoltzmannGenerator, path: str | Path, builder: str, builder_kwargs: dict[str, Any], metadata: dict[str, Any] | None = None) -> Path:
    """Write a generator checkpoint that can be reloaded without the training data.

    The architecture is stored as a recipe, not as pickled code: ``builder`` is the
    dotted path of a function ``builder(energy=None, **builder_kwargs) -> BoltzmannGenerator``
    that rebuilds an untrained generator of the same shape, and ``builder_kwargs``
    are plain, YAML-safe values (numbers, strings, lists, dicts, numpy-free).  Weights
    and buffers (normalisation statistics, z-matrix) travel in the state dict.

    Parameters
    ----------
    generator : BoltzmannGenerator
    path : str or Path
    builder : str
        e.g. ``"openmm_bg.toy_demo.build_toy_generator"``.
    builder_kwargs : dict
    metadata : dict, optional
        Anything YAML-safe to keep alongside (training settings, provenance).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _import_builder(builder)
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "builder": builder,
            "builder_kwargs": builder_kwargs,
            "state_dict": generator.state_dict(),
            "metadata": metadata or {},
        },
        path,
    )
    return path


def read_torch_file(path: str | Path, what: str) -> Any:
    """``torch.load`` a file written by this package, with clear errors.

    Raises ``FileNotFoundError`` naming ``what`` for a missing file, and a one-line
    ``ValueError`` naming the file for one torch cannot read (empty, truncated, random
    bytes, another format).  Only tensors and plain containers are loaded
    (``weights_only=True``), never pickled code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"could not read {what} {path}: it is not a valid openmm_bg {what} (the file is empty)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for a corrupt file
        raise ValueError(f"could not read {what} {path}: it is not a valid openmm_bg {what} (truncated, damaged or another kind of file; {_first_line(error)})") from error


def _first_line(error: BaseException) -> str:
    """The gist of an exception in one short line (torch's messages run over many lines)."""
    text = str(error)
    # torch's weights-only refusal starts with advice on weights_only=False, which does not apply here
    text = text.split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    gist = re.split(r"(?<=\.)\s", lines[0])[0] if lines else ""
    gist = gist if len(gist) <= 160 else gist[:157] + "..."
    return f"{type(error).__name__}: {gist}" if gist else type(error).__name__


def load_generator(path: str | Path, energy: Energy | Callable[[Tensor], Tensor] | None = None) -> BoltzmannGenerator:
    """Rebuild a generator from :func:`save_generator`; ``energy`` becomes its target (or ``None``).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a file that
    is not a readable generator checkpoint.
    """
    state = read_torch_file(path, "generator checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not an openmm_bg generator checkpoint (expected format {CHECKPOINT_FORMAT!r}, got {got!r})")
    missing = [key for key in ("builder", "builder_kwargs", "state_dict") if key not in state]
    if missing:
        raise ValueError(f"{path} is not a valid openmm_bg generator checkpoint: it lacks {', '.join(missing)}")
    generator = _import_builder(state["builder"])(energy=energy, **state["builder_kwargs"])
    try:
        generator.load_state_dict(state["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"generator checkpoint {path} does not fit the architecture its builder makes: {error}") from error
    return generator
