r"""A Boltzmann generator for the 2-D particle dimer in Cartesian coordinates, end to end.

The system is :mod:`openmm_bg.energies.particle_dimer` (Noé, Olsson, Köhler & Wu,
Science 365, eaaw1147 (2019)): a bistable dimer (particles 0 and 1) among 36 identical
repulsive solvent particles in a walled box, 76 in-plane coordinates in nm (``z`` is no
part of the model and stays 0).  The generator acts on the ``(x, y)`` of all 38 particles.

**Identical particles.**  The energy is invariant under any relabelling of the solvent,
and under swapping the two dimer particles, so the labelled Boltzmann density has
``|G| = 2 * 36!`` copies (``log |G| = 96.41``).  The training frames are put in a fixed
order first (:mod:`openmm_bg.coordinates.permutation`): the dimer so that ``x0 < x1``, the
solvent by the optimal (Hungarian) assignment of its particles to the 6 x 6 cell centres
of the box.  The ordered set ``D`` holds one relabelling of every configuration, and the
density of ordered configurations is ``|G| exp(-u) 1_D / Z``: the labelled one times
``|G|`` on ``D``, zero elsewhere.  The generator learns that density; its samples are
reweighted to it with ``log w = -u - log q`` in ``D`` and ``-inf`` (weight zero) outside.
Because the energy is permutation invariant, profiles along the dimer distance and state
free energies are the same under the ordered and the labelled density, so the reweighted
estimates stay exact; the samples that fall outside ``D`` (the flow smooths the faces of
``D``, where the ordered density drops to zero) cost effective sample size only.  Only
the log-normaliser changes, by ``log |G|`` (:func:`log_partition_ordered` reports the
ordered one).

**The generator.**  A fixed affine standardisation of the ordered training frames
(:class:`Whitening`; constant log-determinant) followed by a RealNVP flow
(:func:`openmm_bg.flows.real_nvp`, random permutations between blocks) and a standard
normal prior, trained by :class:`~openmm_bg.training.trainer.Trainer`: by example on MD
(augmented by the mirror images ``x -> -x``, ``y -> -y``), then by example and energy,
for the System's temperature or another (``target_temperature``, relative to 300 K: the
energy is ``u 300 K / T``), optionally with the reaction-coordinate loss along the dimer
distance.  Reverse KL drains the open state from a single flow trained on both states,
so by default (``mixture``) one flow is trained per state and the two are sampled as an
equal mixture, each sample weighted with the mixture density.

**Estimates.**  :func:`reweighted_estimates` draws samples at a temperature, reweights
them to the Boltzmann density there, and returns dF(open - closed) with bootstrap errors,
the Pareto k-hat and per-state ESS (:func:`openmm_bg.analysis.states.state_free_energy`),
and the profile ``F(d) = -log p(d)`` (:func:`openmm_bg.analysis.reweighting.free_energy_profile`),
compared bin by bin with an umbrella-sampling reference where one is given.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..analysis import reweighting as rw
from ..analysis.diagnostics import state_ess
from ..analysis.states import state_free_energy
from ..coordinates.permutation import ReferenceOrdering, square_lattice
from ..energies.particle_dimer import ParticleDimer, dimer_distance
from ..flows import Flatten, Sequential, real_nvp
from ..flows.base import Bijection, check_flat
from ..generator.model import BoltzmannGenerator
from ..generator.prior import NormalPrior
from ..reference.bundled import DATA_DIR
from ..training.recipe import seeded_parameters
from ..training.threads import torch_threads
from ..training.trainer import Trainer, TrainingConfig

__all__ = [
    "SYSTEM_TEMPERATURE",
    "PROFILE_WINDOW",
    "REFERENCE_DIR",
    "Whitening",
    "particle_dimer_ordering",
    "check_particle_positions",
    "load_particle_dimer_frames",
    "mirror_images",
    "particle_dimer_generator",
    "ParticleDimerSettings",
    "ParticleDimerReport",
    "reweighted_estimates",
    "load_umbrella_reference",
    "run_particle_dimer",
    "plot_particle_dimer",
]

#: temperature of the registered ``particle-dimer`` System, K: its kT is the model's energy unit
SYSTEM_TEMPERATURE = 300.0
#: the profile is compared with the reference where the reference lies less than this above its minimum (kT)
PROFILE_WINDOW = 8.0
#: a coordinate this far beyond the wall (nm) costs 2 k_wall (0.5)^2 = 50 kT by itself: no Boltzmann sample goes there
WALL_TOLERANCE = 0.5
#: committed umbrella references: folder name by temperature (K)
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
STATES = ("closed", "open")


class Whitening(Bijection):
    """A fixed affine map to principal axes with unit variance: ``z = (x - mean) V / sqrt(lambda)``.

    ``forward`` has the constant log-determinant ``-sum log sqrt(lambda)``.  ``mean``, the
    eigenvectors ``V`` and eigenvalues ``lambda`` are buffers (float64), fitted once from
    training data by :meth:`fit` and saved with the model.

    Parameters
    ----------
    mean : Tensor, shape (dim,)
    vectors : Tensor, shape (dim, dim)
        Orthonormal columns.
    scales : Tensor, shape (dim,)
        ``sqrt(lambda)``, positive.
    """

    def __init__(self, mean: Tensor, vectors: Tensor, scales: Tensor):
        super().__init__()
        mean, vectors, scales = (torch.as_tensor(a, dtype=torch.float64) for a in (mean, vectors, scales))
        dim = mean.shape[0]
        if mean.shape != (dim,) or vectors.shape != (dim, dim) or scales.shape != (dim,) or not bool((scales > 0).all()):
            raise ValueError(f"need mean (dim,), vectors (dim, dim) and positive scales (dim,); got {tuple(mean.shape)}, {tuple(vectors.shape)}, {tuple(scales.shape)}")
        self.dim = dim
        self.register_buffer("mean", mean)
        self.register_buffer("vectors", vectors)
        self.register_buffer("scales", scales)

    @classmethod
    def fit(cls, x: Tensor, min_scale: float = 1e-3, axes: str = "principal") -> "Whitening":
        """Fitted to ``x`` (shape (n, dim)): ``axes="principal"`` whitens, ``"coordinate"`` only standardises each coordinate.

        Scales below ``min_scale`` are raised to it.
        """
        x = torch.as_tensor(x, dtype=torch.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"whitening needs at least 2 frames of shape (n, dim), got {tuple(x.shape)}")
        if axes not in ("principal", "coordinate"):
            raise ValueError(f"axes must be 'principal' or 'coordinate', got {axes!r}")
        mean = x.mean(0)
        if axes == "coordinate":
            return cls(mean, torch.eye(x.shape[1], dtype=torch.float64), x.std(0).clamp(min=min_scale))
        values, vectors = torch.linalg.eigh(torch.cov((x - mean).T))
        return cls(mean, vectors, values.clamp(min=min_scale**2).sqrt())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_flat(x, self.dim, "x")
        z = (x - self.mean) @ self.vectors / self.scales
        return z, (-torch.log(self.scales).sum()).expand(x.shape[0]).to(x.dtype)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        check_flat(z, self.dim, "z")
        x = (z * self.scales) @ self.vectors.T + self.mean
        return x, torch.log(self.scales).sum().expand(z.shape[0]).to(z.dtype)


def particle_dimer_ordering(energy: ParticleDimer | None = None) -> ReferenceOrdering:
    """The fixed order of identical particles: dimer with ``x0 < x1``, solvent assigned to the box's square cells.

    Returns
    -------
    ReferenceOrdering
        Groups ``[0, 1]`` (reference points ``(-1, 0)`` and ``(1, 0)`` nm, so the identity is
        optimal exactly when ``x0 <= x1``) and the solvent ``2 .. n_particles - 1`` (the centres
        of ``n_solvent`` square cells tiling the box, :func:`~openmm_bg.coordinates.permutation.square_lattice`).
    """
    energy = ParticleDimer() if energy is None else energy
    return ReferenceOrdering(
        energy.n_particles,
        [[0, 1], list(range(2, energy.n_particles))],
        [np.array([[-1.0, 0.0], [1.0, 0.0]]), square_lattice(energy.n_solvent, energy.box_half)],
    )


def check_particle_positions(positions, energy: ParticleDimer | None = None, source: str = "positions") -> np.ndarray:
    """In-plane positions of the particle dimer, checked: shape, finiteness and the wall.

    Parameters
    ----------
    positions : array, shape (n_frames, n_particles, 2 or 3), nm
        ``z``, if given, is dropped (the model lives in the plane).
    energy : ParticleDimer, optional
    source : str
        How error messages name the input (a file name).

    Returns
    -------
    ndarray, shape (n_frames, n_particles, 2), float64, nm

    Raises
    ------
    ValueError
        Wrong number of particles or dimensions, non-finite values, or a coordinate more
        than 0.5 nm beyond the wall at ``+-box_half`` (the wall alone would cost 50 kT:
        not a sample of this model; positions in Angstrom instead of nm look like this).
    """
    energy = ParticleDimer() if energy is None else energy
    x = np.asarray(positions, dtype=np.float64)
    x = x[None] if x.ndim == 2 else x
    if x.ndim != 3 or x.shape[2] not in (2, 3):
        raise ValueError(f"{source}: positions must have shape (n_frames, n_particles, 2 or 3) in nm, got {np.shape(positions)}")
    if x.shape[1] != energy.n_particles:
        raise ValueError(f"{source} has {x.shape[1]} particles; the particle dimer has {energy.n_particles} (2 dimer + {energy.n_solvent} solvent)")
    if x.shape[0] == 0:
        raise ValueError(f"{source} holds no frames")
    x = x[:, :, :2]
    if not np.isfinite(x).all():
        raise ValueError(f"{source} holds non-finite positions (NaN or inf) in {int((~np.isfinite(x)).any(axis=(1, 2)).sum())} frames")
    limit = energy.box_half + WALL_TOLERANCE
    outside = np.abs(x) > limit
    if outside.any():
        frame, particle, axis = np.argwhere(outside)[0]
        raise ValueError(
            f"{source}: {int(outside.any(axis=(1, 2)).sum())} of {x.shape[0]} frames have positions outside the box "
            f"(|{'xy'[axis]}| > {limit:g} nm, {WALL_TOLERANCE:g} nm beyond the wall at {energy.box_half:g} nm), e.g. frame {frame}, "
            f"particle {particle} at {x[frame, particle, axis]:.3g} nm; positions must be in nm"
        )
    return x


def load_particle_dimer_frames(paths: Sequence[str | Path] | None = None, energy: ParticleDimer | None = None, stride: int = 1) -> dict[str, np.ndarray]:
    """Frames of particle-dimer MD, read against the registered topology and checked.

    Parameters
    ----------
    paths : sequence of paths, optional
        Trajectories in any format mdtraj reads, of the registered ``particle-dimer``
        (:func:`~openmm_bg.molecules.trajectories.load_trajectory` checks the particle
        count), then :func:`check_particle_positions`.  Default: the bundled MD of both states.
    energy : ParticleDimer, optional
    stride : int

    Returns
    -------
    dict of str to ndarray, shape (n_frames, n_particles, 2), float64, nm
        By file stem.
    """
    from ..molecules.systems import get_system
    from ..molecules.trajectories import load_trajectory

    energy = ParticleDimer() if energy is None else energy
    if paths is None:
        paths = [DATA_DIR / f"particle-dimer-{state}.dcd" for state in STATES]
    topology = get_system("particle-dimer").topology
    return {Path(path).stem: check_particle_positions(load_trajectory(path, topology, stride=stride), energy, source=str(path)) for path in paths}


def mirror_images(xy: np.ndarray) -> np.ndarray:
    """Every frame and its images under ``x -> -x``, ``y -> -y`` and both, which leave the energy unchanged.

    Parameters
    ----------
    xy : ndarray, shape (n_frames, n_particles, 2), nm

    Returns
    -------
    ndarray, shape (4 n_frames, n_particles, 2), float64, nm
        The frames, then their three images, block by block.  Put them in order afterwards
        (the ``x`` mirror swaps the dimer's ends).
    """
    xy = np.asarray(xy, dtype=np.float64)
    return np.concatenate([xy * np.array(sign) for sign in ((1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0))])


def particle_dimer_generator(
    ordered_frames: np.ndarray,
    energy: ParticleDimer | None = None,
    n_blocks: int = 6,
    hidden: Sequence[int] = (128, 128),
    seed: int = 0,
    axes: str = "principal",
    permute: bool = True,
) -> BoltzmannGenerator:
    """The generator: flatten, whiten (fitted to ``ordered_frames``), RealNVP, standard normal prior; float64.

    Parameters
    ----------
    ordered_frames : ndarray, shape (n_frames, n_particles, 2), nm
        Training frames already put in order (:func:`particle_dimer_ordering`).
    energy : ParticleDimer, optional
        The target (reduced energy at the System's temperature, kT).
    n_blocks, hidden
        Of :func:`~openmm_bg.flows.real_nvp`.
    seed : int
        Initial weights (:func:`~openmm_bg.training.recipe.seeded_parameters`) and the
        permutations between blocks.
    axes : str
        Of :meth:`Whitening.fit`: ``"principal"`` (whiten) or ``"coordinate"`` (standardise).
    permute : bool
        A fixed random permutation between coupling blocks, so that every block splits the
        coordinates differently.
    """
    energy = ParticleDimer() if energy is None else energy
    x = torch.as_tensor(np.ascontiguousarray(check_particle_positions(ordered_frames, energy, "training frames"))).reshape(len(ordered_frames), -1)
    dim = x.shape[1]

    def build() -> BoltzmannGenerator:
        flow = Sequential(Flatten(energy.event_shape), Whitening.fit(x, axes=axes), real_nvp(dim, n_blocks, tuple(hidden), permute=permute, seed=seed))
        return BoltzmannGenerator(NormalPrior(dim), flow, energy).double()

    return seeded_parameters(build, seed)


@dataclass
class ParticleDimerSettings:
    """Data, architecture and budget of a particle-dimer run.  The defaults are the full run.

    Temperatures are relative to the System's, ``tau = T / 300 K``.
    """

    #: bundled MD the generator is trained on by example: ("closed", "open") or one of them
    data_states: tuple[str, ...] = ("closed", "open")
    #: one flow per state of ``data_states``, each trained on its state's MD, sampled as an equal mixture
    #: (a single flow on both states loses the open state under reverse KL: docs/particle_dimer.md)
    mixture: bool = True
    stride: int = 1
    #: final fraction of each trajectory held out (its ML loss is recorded)
    validation_fraction: float = 0.1
    n_blocks: int = 4
    hidden: tuple[int, ...] = (128, 128)
    #: Whitening.fit axes, and random permutations between coupling blocks
    axes: str = "coordinate"
    permute: bool = True
    ml_iterations: int = 1500
    kl_iterations: int = 2000
    batch_size: int = 256
    kl_batch_size: int = 256
    learning_rate: float = 1e-3
    kl_learning_rate: float = 2e-4
    #: AdamW weight decay of both stages (against over-fitting the frames)
    weight_decay: float = 1e-4
    #: KL energies above this (kT) grow logarithmically (:func:`~openmm_bg.training.losses.linlog_cut`)
    energy_cut: float = 1000.0
    #: train on the four mirror images of every frame (x -> -x, y -> -y), symmetries of the energy
    augment: bool = True
    #: KL temperatures: the prior widened by sqrt(tau) and the energy divided by tau, trained together (losses averaged)
    temperatures: tuple[float, ...] = (1.0,)
    #: the temperature the generator represents at its own prior width (TrainingConfig.target_temperature)
    target_temperature: float = 1.0
    #: ML weight during training by energy, from the first value to the second
    w_ml: tuple[float, float] = (1.0, 1.0)
    #: reaction-coordinate (dimer distance) loss weight and kernel width (nm)
    w_rc: float = 0.0
    rc_bandwidth: float = 0.05
    #: temperatures the estimates are made at, and samples per temperature
    estimate_temperatures: tuple[float, ...] = (1.0, 1.5)
    n_samples: int = 50_000
    n_bins: int = 72
    n_bootstrap: int = 100
    seed: int = 0
    torch_threads: int = 1

    @classmethod
    def reduced(cls, **changes) -> "ParticleDimerSettings":
        """A budget for a few minutes on 2 busy cores (``openmm-bg toy particle-dimer --quick``)."""
        values = dict(mixture=True, stride=2, hidden=(64, 64), ml_iterations=300, kl_iterations=300, kl_batch_size=128, n_samples=10_000, n_bootstrap=50)
        values.update(changes)
        return cls(**values)

    def check(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot be run."""
        unknown = set(self.data_states) - set(STATES)
        if not self.data_states or unknown:
            raise ValueError(f"data_states must be a non-empty subset of {STATES}, got {self.data_states}")
        for name in ("stride", "n_blocks", "ml_iterations", "batch_size", "kl_batch_size", "n_samples", "n_bins"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        if self.kl_iterations < 0 or self.n_bootstrap < 2:
            raise ValueError(f"kl-iterations must be >= 0 and n-bootstrap >= 2, got {self.kl_iterations}, {self.n_bootstrap}")
        if not all(t > 0 for t in (*self.temperatures, *self.estimate_temperatures)) or not self.estimate_temperatures:
            raise ValueError(f"temperatures must be positive, got {self.temperatures} and {self.estimate_temperatures}")
        if not 0.0 <= self.validation_fraction < 0.5:
            raise ValueError(f"validation_fraction must lie in [0, 0.5), got {self.validation_fraction}")


def load_umbrella_reference(temperature: float, folder: str | Path | None = None) -> dict | None:
    """The committed umbrella-sampling reference at ``temperature`` (K), or None where there is none.

    Reads ``benchmarks/results/particle-dimer-umbrella/summary.json`` at 300 K and
    ``particle-dimer-umbrella-<T>K/summary.json`` otherwise (``folder`` overrides the
    folder).  Returns ``delta_f``, ``error`` (kT), ``edges`` (nm), ``free_energy`` and
    ``free_energy_error`` (kT, the normalised ``-log p(d)``) as numpy arrays.
    """
    if folder is None:
        name = "particle-dimer-umbrella" if abs(temperature - SYSTEM_TEMPERATURE) < 1e-9 else f"particle-dimer-umbrella-{temperature:g}K"
        folder = REFERENCE_DIR / name
    path = Path(folder) / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if abs(float(summary["temperature_K"]) - temperature) > 1e-6:
        raise ValueError(f"{path} is a reference at {summary['temperature_K']} K, not {temperature} K")
    profile = summary["profile"]
    return {
        "temperature_K": float(summary["temperature_K"]),
        "delta_f": float(summary["delta_f_kT"]),
        "error": float(summary["error_kT"]),
        "edges": np.asarray(profile["bin_edges_nm"], dtype=np.float64),
        "free_energy": np.asarray(profile["free_energy_kT"], dtype=np.float64),
        "free_energy_error": np.asarray([np.nan if e is None else e for e in profile["error_kT"]], dtype=np.float64),
        "source": str(path),
    }


def _mixture_log_weight(components: list, sample: dict, prior_temperature: float) -> np.ndarray:
    """``-u - log((1/K) sum_k q_k(x))`` for samples of one component (``sample["energy"]`` is already ``u / tau``)."""
    u = sample["energy"]
    finite = np.isfinite(u) & sample["in_domain"]
    log_q = np.full((len(components), len(u)), -np.inf)
    with torch.no_grad():
        x = torch.as_tensor(sample["x"][finite])
        for k, g in enumerate(components):
            log_q[k, finite] = g.log_prob(x.to(g._param_like().dtype), prior_temperature).double().numpy()
    top = np.where(finite, log_q.max(0), 0.0)
    with np.errstate(divide="ignore"):  # rows outside the domain: log 0, masked below
        log_mix = top + np.log(np.exp(log_q - top).sum(0)) - math.log(len(components))
    return np.where(finite, -u - log_mix, -np.inf)


def reweighted_estimates(
    generator: BoltzmannGenerator | Sequence[BoltzmannGenerator],
    ordering: ReferenceOrdering,
    temperature: float = 1.0,
    n_samples: int = 50_000,
    edges: np.ndarray | None = None,
    reference: dict | None = None,
    n_bootstrap: int = 100,
    seed: int = 0,
    chunk: int = 5000,
    prior_temperature: float | None = None,
) -> dict:
    """dF(open - closed) and the profile along the dimer distance from reweighted generator samples.

    Samples are drawn with the prior at relative temperature ``prior_temperature`` (its
    width times the square root) and weighted to the Boltzmann density at ``temperature``,
    ``log w = -u / tau - log q``, with weight zero outside the ordered set (module notes).

    Parameters
    ----------
    generator : BoltzmannGenerator or sequence of them
        Trained on ordered frames, target :class:`ParticleDimer`.  Several are sampled as
        an equal mixture: ``n_samples / K`` from each, every sample weighted with the
        mixture density ``q = (1/K) sum_k q_k`` (all ``K`` densities evaluated on it), which
        keeps the estimates exact.
    ordering : ReferenceOrdering
        The one its training frames were ordered with.
    temperature : float
        ``T / 300 K``.
    n_samples : int
    edges : ndarray, shape (n_bins + 1,), nm, optional
        Profile bins; default the reference's, or 72 bins over 0.65-2.45 nm.
    reference : dict, optional
        From :func:`load_umbrella_reference`: the comparison is added.
    n_bootstrap, seed
        Bootstrap of dF and the profile.
    chunk : int
        Samples drawn at a time.
    prior_temperature : float, optional
        Default ``temperature``: right for a generator trained at its own prior width for
        the System's temperature; one trained for ``target_temperature`` uses
        ``temperature / target_temperature``.

    Returns
    -------
    dict
        ``temperature``, ``n_samples``, ``fraction_ordered``, ``kish_ess``, ``raw_fraction_open``,
        ``delta_f`` (the dict of :func:`~openmm_bg.analysis.states.state_free_energy`:
        value, bootstrap error, k-hat, ESS per state, warnings), ``profile``
        (:class:`~openmm_bg.analysis.reweighting.FreeEnergyProfile`), ``distance`` and
        ``log_weight`` (shape (n_samples,)), and with a reference ``reference``,
        ``profile_window`` (bins where the reference is below :data:`PROFILE_WINDOW` above
        its minimum), ``max_profile_deviation`` (kT, ``inf`` if a bin in the window got no
        weight), ``delta_f_deviation`` and ``delta_f_sigmas`` (in combined standard errors).
    """
    components = [generator] if isinstance(generator, BoltzmannGenerator) else list(generator)
    energy = components[0].target
    split = energy.barrier_distance()
    prior_temperature = temperature if prior_temperature is None else prior_temperature
    scale = prior_temperature / temperature  # sample() divides by the prior temperature: u / tau in the end
    rng = torch.Generator().manual_seed(int(seed))
    distances, log_weights, ordered = [], [], []
    counts = [n_samples // len(components) + (k < n_samples % len(components)) for k in range(len(components))]
    draws = [(g, min(chunk, n - first)) for g, n in zip(components, counts) for first in range(0, n, chunk)]
    for drawn_from, size in draws:
        sample = drawn_from.sample(size, prior_temperature, generator=rng, energy=lambda x: energy(x) * scale).numpy()
        if len(components) > 1:
            sample["log_weight"] = _mixture_log_weight(components, sample, prior_temperature)
        inside = sample["in_domain"] & np.isfinite(sample["log_weight"])
        x = np.where(inside[:, None, None], sample["x"], 0.0)
        is_ordered = inside & ordering.is_ordered(x)
        ordered.append(is_ordered)
        distances.append(np.where(inside, dimer_distance(x), np.nan))
        log_weights.append(np.where(is_ordered, sample["log_weight"], -np.inf))
    d, log_w, is_ordered = np.concatenate(distances), np.concatenate(log_weights), np.concatenate(ordered)
    closed, open_ = is_ordered & (d < split), is_ordered & (d > split)
    result = {
        "temperature": float(temperature),
        "prior_temperature": float(prior_temperature),
        "n_samples": int(n_samples),
        "fraction_ordered": float(is_ordered.mean()),
        "raw_fraction_open": float(open_.sum() / max(is_ordered.sum(), 1)),
        "kish_ess": rw.kish_ess(log_w) if np.isfinite(log_w).any() else 0.0,
        "state_ess": {name: state_ess(log_w, mask) for name, mask in zip(STATES, (closed, open_))},
        "distance": d,
        "log_weight": log_w,
    }
    try:
        result["delta_f"] = state_free_energy(log_w, closed, open_, n_bootstrap=n_bootstrap, seed=seed, names=STATES, warn=False)
    except ValueError as error:  # a state without weight: report it rather than fail the run
        result["delta_f"] = {"delta_f_kT": math.nan, "error_kT": math.nan, "warnings": [str(error)], "k_hat": None, "ess_a": 0.0, "ess_b": 0.0}
    if edges is None:
        edges = reference["edges"] if reference is not None else np.linspace(0.65, 2.45, 73)
    safe_d = np.where(np.isfinite(d), d, -1.0)  # failed samples carry no weight; put them below every bin
    result["profile"] = rw.free_energy_profile(safe_d, log_w, bins=edges, n_bootstrap=n_bootstrap, seed=seed)
    if reference is not None:
        f_ref = reference["free_energy"]
        window = np.isfinite(f_ref) & (f_ref - np.min(f_ref[np.isfinite(f_ref)]) < PROFILE_WINDOW)
        with np.errstate(invalid="ignore"):  # inf - inf outside the window
            deviation = np.abs(result["profile"].free_energy - f_ref)[window]
        value, error = result["delta_f"]["delta_f_kT"], result["delta_f"]["error_kT"]
        result.update(
            reference=reference,
            profile_window=window,
            max_profile_deviation=float(np.max(np.where(np.isnan(deviation), np.inf, deviation))),
            delta_f_deviation=float(value - reference["delta_f"]),
            delta_f_sigmas=float(abs(value - reference["delta_f"]) / math.hypot(error, reference["error"])) if np.isfinite(error) else math.inf,
        )
    return result


@dataclass
class ParticleDimerReport:
    """What a run produced: the generator, its training and the estimates per temperature."""

    settings: ParticleDimerSettings
    #: estimate dicts of :func:`reweighted_estimates`, one per ``settings.estimate_temperatures``
    estimates: list
    energy_evaluations: int
    wall_time: float
    n_training_frames: int
    history: list = field(repr=False, default_factory=list)
    generator: BoltzmannGenerator | None = field(repr=False, default=None)
    ordering: ReferenceOrdering | None = field(repr=False, default=None)

    def summary(self) -> str:
        """The report's lines, for printing."""
        s = self.settings
        lines = [
            f"system                 particle-dimer (2-D dimer + 36 solvent, Cartesian x, y; ordered solvent)",
            f"trained on             MD of {' + '.join(s.data_states)}: {self.n_training_frames} frames"
            + (" (one flow per state, sampled as an equal mixture)" if s.mixture else "")
            + f", then by energy for {SYSTEM_TEMPERATURE * s.target_temperature:g} K"
            + (f" (KL at T/T_target = {', '.join(f'{t:g}' for t in s.temperatures)})" if tuple(s.temperatures) != (1.0,) else ""),
        ]
        for e in self.estimates:
            df = e["delta_f"]
            head = f"T = {SYSTEM_TEMPERATURE * e['temperature']:g} K"
            lines += [
                f"{head:<23}{e['n_samples']} samples, {100 * e['fraction_ordered']:.1f} % in the ordered set, Kish ESS {100 * e['kish_ess']:.2f} %",
                f"  raw samples open     {100 * e['raw_fraction_open']:.1f} %; effective samples closed {e['state_ess']['closed']:.1f}, open {e['state_ess']['open']:.1f}",
                f"  dF(open - closed)    {df['delta_f_kT']:.3f} +- {df['error_kT']:.3f} kT (bootstrap)",
            ]
            if df.get("k_hat") is not None:
                lines.append(f"  Pareto k-hat         {df['k_hat']:.2f}")
            if "reference" in e:
                ref = e["reference"]
                lines += [
                    f"  umbrella reference   {ref['delta_f']:.3f} +- {ref['error']:.3f} kT; deviation {e['delta_f_deviation']:+.3f} kT = {e['delta_f_sigmas']:.1f} combined sigma",
                    f"  profile, ref < {PROFILE_WINDOW:g} kT  max |F - F_ref| = {e['max_profile_deviation']:.3f} kT over {int(e['profile_window'].sum())} bins",
                ]
            lines += [f"  warning              {w}" for w in df.get("warnings", [])]
        lines += [f"energy evaluations     {self.energy_evaluations}", f"wall time              {self.wall_time:.1f} s"]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready figures (no arrays of samples)."""
        rows = []
        for e in self.estimates:
            p = e["profile"]
            row = {
                "temperature_K": SYSTEM_TEMPERATURE * e["temperature"],
                "n_samples": e["n_samples"],
                "fraction_ordered": e["fraction_ordered"],
                "kish_ess": e["kish_ess"],
                "state_ess": e["state_ess"],
                "raw_fraction_open": e["raw_fraction_open"],
                "delta_f": {k: v for k, v in e["delta_f"].items()},
                "profile": {"bin_edges_nm": p.bin_edges.tolist(), "free_energy_kT": _jsonable(p.free_energy), "error_kT": _jsonable(p.error), "counts": p.counts.tolist()},
            }
            if "reference" in e:
                row.update(
                    reference={"delta_f_kT": e["reference"]["delta_f"], "error_kT": e["reference"]["error"], "source": e["reference"]["source"]},
                    max_profile_deviation_kT=e["max_profile_deviation"],
                    profile_window_bins=int(e["profile_window"].sum()),
                    delta_f_deviation_kT=e["delta_f_deviation"],
                    delta_f_sigmas=e["delta_f_sigmas"],
                )
            rows.append(row)
        return {"settings": asdict(self.settings), "estimates": rows, "energy_evaluations": self.energy_evaluations,
                "wall_time_s": self.wall_time, "n_training_frames": self.n_training_frames}


def _jsonable(a: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=np.float64)]


def _train(trainer: Trainer, target: int, checkpoint: Path | None, progress: bool, save_every: int = 250) -> None:
    """Train to ``target`` iterations, resuming from and saving to ``checkpoint`` when given."""
    if checkpoint is not None and checkpoint.is_file():
        trainer.load_checkpoint(checkpoint)
    while trainer.iteration < target:
        trainer.train(min(target, trainer.iteration + (save_every if checkpoint is not None else target)), progress=progress)
        if checkpoint is not None:
            trainer.save_checkpoint(checkpoint)


def run_particle_dimer(settings: ParticleDimerSettings | None = None, progress: bool = True, checkpoint_dir: str | Path | None = None, log=None) -> ParticleDimerReport:
    """Train a generator on the particle dimer and make its reweighted estimates (module notes).

    Parameters
    ----------
    settings : ParticleDimerSettings, optional
    progress : bool
        Progress bars while training.
    checkpoint_dir : path, optional
        Trainer checkpoints go there (``by-example.pt``, ``by-energy.pt``) every 250
        iterations; a run with the same settings resumes from them.
    log : callable, optional
        Called with one line of text per stage.
    """
    settings = settings or ParticleDimerSettings()
    settings.check()
    with torch_threads(settings.torch_threads):
        return _run(settings, progress, None if checkpoint_dir is None else Path(checkpoint_dir), log or (lambda line: None))


#: settings that do not change a training (a checkpoint is reused across them)
_ESTIMATE_ONLY = ("data_states", "mixture", "estimate_temperatures", "n_samples", "n_bins", "n_bootstrap", "torch_threads")


def _train_generator(settings: ParticleDimerSettings, states: tuple[str, ...], energy: ParticleDimer, ordering: ReferenceOrdering,
                     progress: bool, checkpoint_dir: Path | None, log) -> tuple[BoltzmannGenerator, list, int, int]:
    """One generator trained on the MD of ``states``: by example, then by example and energy.

    Returns the generator, its history, the energy evaluations of training and the number of training frames.
    """
    from ..molecules.trajectories import hold_out_final

    tag = "+".join(states)
    frames = load_particle_dimer_frames([DATA_DIR / f"particle-dimer-{state}.dcd" for state in states], energy, settings.stride)
    parts = [hold_out_final(x, settings.validation_fraction) for x in frames.values()]
    train = np.concatenate([p[0] for p in parts])
    train = ordering.reorder(mirror_images(train) if settings.augment else train)
    validation = ordering.reorder(np.concatenate([p[1] for p in parts]))
    log(f"[{tag}] training frames {len(train)} ordered{' (with mirror images)' if settings.augment else ''}, {len(validation)} held out")
    generator = particle_dimer_generator(train, energy, settings.n_blocks, settings.hidden, settings.seed, settings.axes, settings.permute)
    data = torch.as_tensor(train)
    held = torch.as_tensor(validation) if len(validation) else None
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        settings_file = checkpoint_dir / f"{tag}-settings.json"
        current = {k: v for k, v in json.loads(json.dumps(asdict(settings))).items() if k not in _ESTIMATE_ONLY}
        if settings_file.is_file() and json.loads(settings_file.read_text()) != current:
            raise ValueError(f"{settings_file} holds a training with other settings; use another folder")
        settings_file.write_text(json.dumps(current, indent=1))
        checkpoint = lambda stage: checkpoint_dir / f"{tag}-{stage}.pt"  # noqa: E731
    by_example = TrainingConfig(
        n_iterations=settings.ml_iterations, batch_size=settings.batch_size, learning_rate=settings.learning_rate, lr_schedule="cosine",
        weight_decay=settings.weight_decay, w_ml=1.0, seed=settings.seed,
    )
    stage1 = Trainer(generator, by_example, data=data, validation_data=held)
    _train(stage1, settings.ml_iterations, checkpoint and checkpoint("by-example"), progress)
    log(f"[{tag}] by example {settings.ml_iterations} iterations, J_ML {stage1.history[-1]['ml']:.2f}")
    history, evaluations = list(stage1.history), stage1.energy_evaluations
    if settings.kl_iterations:
        n = settings.kl_iterations
        by_energy = TrainingConfig(
            n_iterations=n,
            batch_size=settings.batch_size,
            kl_batch_size=settings.kl_batch_size,
            learning_rate=settings.kl_learning_rate,
            lr_schedule="cosine",
            weight_decay=settings.weight_decay,
            w_ml=[[0, settings.w_ml[0]], [n, settings.w_ml[1]]],
            w_kl=[[0, 0.0], [min(100, n), 1.0]],
            energy_cut=settings.energy_cut,
            nonfinite="drop",
            target_temperature=settings.target_temperature,
            w_rc=settings.w_rc,
            rc_bandwidth=settings.rc_bandwidth,
            temperatures=list(settings.temperatures),
            seed=settings.seed + 1,
        )
        reaction_coordinate = (lambda x: (x[:, 0, :] - x[:, 1, :]).norm(dim=-1)) if settings.w_rc > 0 else None
        stage2 = Trainer(generator, by_energy, data=data, reaction_coordinate=reaction_coordinate, validation_data=held)
        _train(stage2, n, checkpoint and checkpoint("by-energy"), progress)
        log(f"[{tag}] by energy {n} iterations, J_KL {stage2.history[-1]['kl']:.2f}, J_ML {stage2.history[-1]['ml']:.2f}")
        history += stage2.history
        evaluations += stage2.energy_evaluations
    return generator, history, evaluations, len(train)


def _run(settings: ParticleDimerSettings, progress: bool, checkpoint_dir: Path | None, log) -> ParticleDimerReport:
    t0 = time.perf_counter()
    energy = ParticleDimer()
    ordering = particle_dimer_ordering(energy)
    groups = [(state,) for state in settings.data_states] if settings.mixture else [tuple(settings.data_states)]
    trained = [_train_generator(settings, states, energy, ordering, progress, checkpoint_dir, log) for states in groups]
    generators = [t[0] for t in trained]
    evaluations = sum(t[2] for t in trained)
    estimates = []
    for k, tau in enumerate(settings.estimate_temperatures):
        reference = load_umbrella_reference(SYSTEM_TEMPERATURE * tau)
        edges = None if reference is not None else np.linspace(0.65, 2.45, settings.n_bins + 1)
        estimates.append(reweighted_estimates(
            generators if settings.mixture else generators[0], ordering, tau, settings.n_samples, edges, reference,
            settings.n_bootstrap, settings.seed + 2 + k, prior_temperature=tau / settings.target_temperature,
        ))
        evaluations += settings.n_samples
    return ParticleDimerReport(
        settings=settings, estimates=estimates, energy_evaluations=int(evaluations), wall_time=time.perf_counter() - t0,
        n_training_frames=sum(t[3] for t in trained), history=trained[0][1], generator=generators[0] if len(generators) == 1 else generators,
        ordering=ordering,
    )


def plot_particle_dimer(report: ParticleDimerReport, path: str | Path) -> Path:
    """Write a PNG: one profile panel per temperature (generator raw and reweighted against umbrella) and the losses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(report.estimates)
    fig, axes = plt.subplots(1, n + 1, figsize=(5.6 * (n + 1), 5.4))
    split = ParticleDimer().barrier_distance()
    for ax, e in zip(axes, report.estimates):
        prof = e["profile"]
        if "reference" in e:
            ref = e["reference"]
            finite = np.isfinite(ref["free_energy"])
            shift = float(np.min(ref["free_energy"][finite]))
            centres = 0.5 * (ref["edges"][1:] + ref["edges"][:-1])
            ax.plot(centres[finite], ref["free_energy"][finite] - shift, "k-", lw=1.5, label=f"umbrella sampling: dF = {ref['delta_f']:.2f} +- {ref['error']:.2f} kT")
        else:
            finite = np.isfinite(prof.free_energy)
            shift = float(np.min(prof.free_energy[finite])) if finite.any() else 0.0
        ordered = np.isfinite(e["log_weight"])
        raw = rw.free_energy_profile(np.where(ordered, e["distance"], -1.0), np.where(ordered, 0.0, -np.inf), bins=prof.bin_edges, n_bootstrap=0)
        ax.plot(raw.bin_centers, raw.free_energy - shift, "o", ms=3, color="tab:orange", alpha=0.7, label="generator, raw samples (not reweighted)")
        df = e["delta_f"]
        ax.errorbar(prof.bin_centers, prof.free_energy - shift, yerr=prof.error, fmt="s", ms=3, color="tab:red", capsize=2,
                    label=f"generator, reweighted: dF = {df['delta_f_kT']:.2f} +- {df['error_kT']:.2f} kT")
        ax.axhline(PROFILE_WINDOW, color="grey", ls=":", lw=1, label=f"{PROFILE_WINDOW:g} kT: compared below it")
        ax.axvline(split, color="grey", ls="--", lw=0.8)
        ax.text(split - 0.03, 0.3, "closed", ha="right", color="grey", fontsize=9)
        ax.text(split + 0.03, 0.3, "open", ha="left", color="grey", fontsize=9)
        k_hat = df.get("k_hat")
        quality = f"Kish ESS {100 * e['kish_ess']:.2f} %" + (f", Pareto k-hat {k_hat:.2f}" if k_hat is not None and np.isfinite(k_hat) else "")
        ax.set(xlabel="dimer distance d (nm)", ylabel="free energy F(d) (kT)", xlim=(prof.bin_edges[0], prof.bin_edges[-1]), ylim=(-0.5, 20),
               title=f"T = {SYSTEM_TEMPERATURE * e['temperature']:g} K ({e['n_samples']} samples)\n{quality}")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1, frameon=False)
    ax = axes[-1]
    hist = report.history
    it = np.arange(len(hist))
    for key, color in (("ml", "tab:blue"), ("kl", "tab:green"), ("ml_validation", "tab:cyan")):
        values = np.array([row.get(key, np.nan) for row in hist])
        shown = np.isfinite(values)
        ax.plot(it[shown], values[shown], color=color, lw=0.8, label={"ml": "J_ML (training frames)", "kl": "J_KL", "ml_validation": "J_ML (held-out frames)"}[key])
    ax.axvline(report.settings.ml_iterations, color="grey", ls="--", lw=1)
    finite = [row[k] for row in hist for k in ("ml", "kl", "ml_validation") if k in row and np.isfinite(row[k])]
    if finite:
        lo, hi = np.percentile(finite, [1, 95])
        ax.set_ylim(lo - 0.1 * (hi - lo) - 1, hi + 0.3 * (hi - lo) + 1)
    which = f"the {report.settings.data_states[0]} state's flow" if report.settings.mixture else "the flow"
    ax.set(xlabel="iteration", ylabel="loss (nats)", title=f"training of {which}:\nby example | by example + energy")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
