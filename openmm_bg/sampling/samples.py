"""Importance-weighted samples from a trained generator: draw, save and load.

The generator is read from a checkpoint (``openmm-bg train`` writes one); its target
energy is the molecule the checkpoint carries (or, in older checkpoints, the registered
system its metadata names) at the checkpoint's temperature, or the one given with
--system or --structure, which must then match the molecule carried.  N latent points are
drawn in batches from a seeded ``torch.Generator`` (the same seed and batch size give
identical files), mapped to configurations, and their energies computed.

Outputs in --output:

samples.dcd
    The configurations (nm, single precision as DCD stores them), one frame per
    written sample, in drawing order.
samples.pdb
    The topology and the first written frame, to open the DCD with.
samples.npz
    A documented array file; per written frame ``i`` (n_written rows, same order as
    the DCD):

    ``log_weight`` (n_written,) float64
        Unnormalised log importance weight ``-u(x) - log q(x)``; ``-inf`` where the
        energy is not finite.  Self-normalise it (``openmm_bg.analysis.reweighting``).
    ``energy`` (n_written,) float64, kT
        Reduced energy ``u(x) = U(x) / kT`` at ``temperature_K``; ``+inf`` where OpenMM
        could not evaluate it.
    ``log_prob`` (n_written,) float64
        Log density ``log q(x)`` of the generator at ``x`` (per nm^(3 n_atoms)).
    ``z`` (n_written, latent_dim) float64
        The latent points the configurations came from.

    and the scalars ``n_requested`` (samples drawn), ``n_written`` (frames in the
    DCD), ``n_out_of_domain``, ``temperature_K``, ``system`` (its name), ``seed``,
    ``batch_size`` and ``energy_evaluations``.

Samples whose positions (or generator density) are not finite fell outside the
coordinate domain of the generator's internal coordinates: they are not written,
only counted in ``n_out_of_domain``.  Their importance weight is exactly zero, so
leaving them out changes no self-normalised estimate; only the Kish ESS, reported
here as a fraction of all samples drawn, counts them.  ``energy``, ``log_prob`` and
``log_weight`` are those of the double-precision samples; values recomputed from the
single-precision DCD differ by the rounding (for ala2, about 1e-4 of ``u``).

``openmm-bg sample`` writes such a folder; :func:`load_samples` reads one back.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import ensure_count

__all__ = ["SampleSet", "SAMPLE_FILES", "load_checkpoint", "draw_samples", "weigh_configurations", "save_samples", "load_samples", "report_lines"]

#: file names in a sample folder
SAMPLE_FILES = {"trajectory": "samples.dcd", "topology": "samples.pdb", "arrays": "samples.npz"}
_PER_FRAME = ("log_weight", "energy", "log_prob", "z")
_SCALARS = ("n_requested", "n_written", "n_out_of_domain", "temperature_K", "system")


@dataclass
class SampleSet:
    """Generator samples that lie in the coordinate domain, with their weights.

    The numpy, on-disk form of :class:`~openmm_bg.generator.GeneratorSample` draws:
    :func:`draw_samples` keeps their rows in the domain (same field names; ``x`` is
    also ``positions``, as in the DCD) and counts the others, so the domain check,
    the failed-energy rule and the log weights are those of
    :meth:`BoltzmannGenerator.sample <openmm_bg.generator.BoltzmannGenerator.sample>`.

    Attributes
    ----------
    positions : ndarray, shape (n_written, n_atoms, 3), nm
        float64 when drawn, float32 when read back from a DCD.
    log_weight, energy, log_prob : ndarray, shape (n_written,), float64
        As documented for samples.npz (:mod:`openmm_bg.sampling.samples`).
    z : ndarray, shape (n_written, latent_dim), float64
    n_requested : int
        Samples drawn, written or not.
    n_out_of_domain : int
        Samples drawn but not kept (non-finite positions or density; zero weight).
    temperature_K : float
    system : str
    energy_evaluations : int
    wall_time_s : float
        Time to draw the samples and compute their energies (0 when read from files).
    """

    positions: np.ndarray
    log_weight: np.ndarray
    energy: np.ndarray
    log_prob: np.ndarray
    z: np.ndarray
    n_requested: int
    n_out_of_domain: int
    temperature_K: float
    system: str
    energy_evaluations: int = 0
    wall_time_s: float = 0.0

    @property
    def x(self) -> np.ndarray:
        """The configurations, ``positions`` (the name :class:`~openmm_bg.generator.GeneratorSample` uses)."""
        return self.positions

    @property
    def n_written(self) -> int:
        """Number of kept samples (frames)."""
        return int(self.log_weight.shape[0])

    @property
    def n_finite(self) -> int:
        """Kept samples with a finite energy (and so a non-zero weight)."""
        return int(np.isfinite(self.energy).sum())

    @property
    def all_log_weights(self) -> np.ndarray:
        """Log weights of all ``n_requested`` samples: the kept ones, then ``-inf`` for those out of the domain."""
        return np.concatenate([self.log_weight, np.full(self.n_out_of_domain, -np.inf)])

    def kish_ess(self) -> float:
        """Kish effective sample size as a fraction of all samples drawn (0 if no weight is finite)."""
        from ..analysis.reweighting import kish_ess

        if self.n_finite == 0:
            return 0.0
        return kish_ess(self.all_log_weights)

    def pareto_khat(self) -> float | None:
        """Pareto k-hat of the weights of all samples drawn (:func:`openmm_bg.analysis.pareto_khat`).

        None for fewer than 25 samples drawn (too few to fit a tail) or no finite weight;
        ``nan`` when fewer than 5 distinct large weights make the tail.
        """
        from ..analysis.diagnostics import pareto_khat, pareto_tail_size

        if self.n_finite == 0 or pareto_tail_size(self.n_requested) < 5:
            return None
        return pareto_khat(self.all_log_weights)


def load_checkpoint(
    checkpoint: str | os.PathLike,
    *,
    system: str | None = None,
    structure: str | os.PathLike | None = None,
    system_file: str | os.PathLike | None = None,
    **build,
):
    """A generator checkpoint with its target energy attached.

    Parameters
    ----------
    checkpoint : path
        Written by :func:`openmm_bg.generator.save_generator` (e.g. by ``openmm-bg train``).
    system : str, optional
        A registered system to use instead of the checkpoint's molecule.
    structure, system_file : path, optional
        Your own files instead (see :func:`openmm_bg.molecules.load_system`).  Given
        none of these, the molecule is the one the checkpoint carries
        (:func:`openmm_bg.molecules.loading.system_from_checkpoint_metadata`), or for an
        older checkpoint the registered system ``metadata["system"]`` names.  When the
        checkpoint carries a molecule, the one given must match it (particles, elements
        and the energy at its stored positions).
    **build
        How those files are built: ``forcefield``, ``implicit_solvent``, ``constraints``,
        ``nonbonded_cutoff`` of :func:`openmm_bg.molecules.load_system`.

    Returns
    -------
    generator : BoltzmannGenerator
        With ``OpenMMEnergy(molecule.system, temperature, platform=molecule.platform)`` as target.
    molecule : MolecularSystem
    temperature : float, K
        The checkpoint's ``temperature_K``, else the system's temperature.
    metadata : dict

    Raises
    ------
    ValueError
        The given system does not match the checkpoint's molecule (the message names the
        first difference), or its atom count does not match the generator's.
    """
    from ..energies import OpenMMEnergy
    from ..generator.checkpoints import load_generator, read_torch_file
    from ..molecules.loading import resolve_system

    checkpoint = Path(checkpoint)
    bare = load_generator(checkpoint)  # checks the file and gives the configuration shape
    metadata = read_torch_file(checkpoint, "generator checkpoint").get("metadata") or {}
    if not isinstance(metadata, dict):
        metadata = {}
    molecule = resolve_system(
        metadata, system, None if structure is None else Path(structure), None if system_file is None else Path(system_file), checkpoint, **build
    )
    if tuple(bare.event_shape) != (molecule.n_atoms, 3):
        raise ValueError(
            f"the generator in {checkpoint} makes configurations of shape {tuple(bare.event_shape)}, "
            f"but {molecule.name} has {molecule.n_atoms} atoms"
        )
    recorded = metadata.get("temperature_K")
    try:
        temperature = float(molecule.temperature if recorded is None else recorded)
    except (TypeError, ValueError):
        temperature = float("nan")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"{checkpoint} records the temperature {recorded!r}; expected a positive number of kelvin")
    energy = OpenMMEnergy(molecule.system, temperature, platform=molecule.platform)
    return load_generator(checkpoint, energy), molecule, temperature, metadata


def draw_samples(
    generator,
    n: int,
    *,
    seed: int = 0,
    batch_size: int = 10000,
    progress: bool = False,
    system: str = "",
    temperature_K: float = float("nan"),
) -> SampleSet:
    """Draw ``n`` samples in batches and weight them by the generator's target energy.

    Latent points come from ``torch.Generator().manual_seed(seed)``, batch after batch,
    so the same seed and batch size give identical samples.  Each batch is one
    :meth:`BoltzmannGenerator.sample <openmm_bg.generator.BoltzmannGenerator.sample>`:
    samples outside the principal coordinate domain are dropped and counted (their
    weight is zero); energies are computed only for the others, which are the energy
    evaluations reported.

    Parameters
    ----------
    generator : BoltzmannGenerator
        With a target energy.
    n, batch_size : int
    seed : int
    progress : bool
        Show a progress bar over batches.
    system : str
        Name recorded with the samples.
    temperature_K : float
        Temperature recorded with the samples.

    Returns
    -------
    SampleSet
    """
    import torch
    from tqdm.auto import tqdm

    n = ensure_count(n, "the number of samples")
    batch_size = ensure_count(batch_size, "the batch size")
    if generator.target is None:
        raise ValueError("the generator has no target energy; load it with load_checkpoint or load_generator(path, energy)")
    rng = torch.Generator().manual_seed(int(seed))
    start = time.perf_counter()
    kept: dict[str, list[np.ndarray]] = {key: [] for key in ("positions", "z", "log_prob", "energy", "log_weight")}
    n_out = 0
    with tqdm(total=n, disable=not progress, desc="sampling", unit="samples", leave=False) as bar:
        for first in range(0, n, batch_size):
            size = min(batch_size, n - first)
            # the one way to draw: domain marking, failed energies as +inf and log weights happen there
            sample = generator.sample(size, generator=rng)
            keep = sample.in_domain
            for key, value in (("positions", sample.x), ("z", sample.z), ("log_prob", sample.log_prob), ("energy", sample.energy), ("log_weight", sample.log_weight)):
                kept[key].append(value[keep].detach().double().cpu().numpy())
            n_out += sample.n_out_of_domain
            bar.update(size)
    arrays = {key: np.concatenate(values) for key, values in kept.items()}
    return SampleSet(
        positions=arrays["positions"],
        log_weight=arrays["log_weight"],
        energy=arrays["energy"],
        log_prob=arrays["log_prob"],
        z=arrays["z"],
        n_requested=int(n),
        n_out_of_domain=n_out,
        temperature_K=float(temperature_K),
        system=str(system),
        energy_evaluations=int(arrays["energy"].shape[0]),
        wall_time_s=time.perf_counter() - start,
    )


def weigh_configurations(generator, positions, *, batch_size: int = 10000) -> np.ndarray:
    """Log importance weights ``-u(x) - log p_X(x)`` of given configurations (e.g. MD frames).

    These are what a two-sided estimate needs from samples that the generator did not
    draw (:func:`openmm_bg.analysis.two_sided_state_free_energy`).

    Parameters
    ----------
    generator : BoltzmannGenerator
        With a target energy.
    positions : array, shape (n, *generator.event_shape), nm
    batch_size : int

    Returns
    -------
    ndarray, shape (n,), float64
        ``+inf`` where the generator cannot reach a configuration (its density is zero or
        undefined there); ``-inf`` where the energy failed.
    """
    import torch

    batch_size = ensure_count(batch_size, "the batch size")
    if generator.target is None:
        raise ValueError("the generator has no target energy; load it with load_checkpoint or load_generator(path, energy)")
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim < 2 or positions.shape[0] == 0:
        raise ValueError(f"positions must be a non-empty batch of configurations, got shape {positions.shape}")
    if not np.isfinite(positions).all():
        raise ValueError("positions hold NaN or infinite coordinates")
    like = generator._param_like()
    out = []
    for first in range(0, positions.shape[0], batch_size):
        x = torch.as_tensor(positions[first:first + batch_size])
        with torch.no_grad():
            log_prob = generator.log_prob(x.to(like.dtype)).double()
            energy = generator.energy(x).double()
        log_prob = torch.where(torch.isnan(log_prob), torch.full_like(log_prob, -math.inf), log_prob)
        energy = torch.where(torch.isnan(energy), torch.full_like(energy, math.inf), energy)
        # unreachable (log p = -inf) gives +inf unless the energy failed too (then the energy's -inf wins)
        log_w = torch.where(torch.isinf(energy), torch.full_like(energy, -math.inf), -energy - log_prob)
        out.append(log_w.cpu().numpy())
    return np.concatenate(out)


def save_samples(samples: SampleSet, folder: str | os.PathLike, topology, *, box_lengths=None, extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write samples.dcd, samples.pdb and samples.npz (see the module notes) to ``folder``.

    Parameters
    ----------
    samples : SampleSet
    folder : path
    topology : mdtraj.Topology, openmm.app.Topology or MolecularSystem
    box_lengths : array, shape (3,), nm, optional
        Periodic box written with every frame.
    extra : dict, optional
        More scalars for samples.npz (e.g. ``seed``).

    Returns
    -------
    dict
        ``trajectory``, ``topology``, ``arrays`` -> path.
    """
    from ..molecules.trajectories import save_topology, save_trajectory

    if samples.n_written == 0:
        raise ValueError(
            f"all {samples.n_requested} samples fell outside the generator's coordinate domain; nothing to write "
            "(is the generator trained for this system?)"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {key: folder / name for key, name in SAMPLE_FILES.items()}
    save_trajectory(paths["trajectory"], samples.positions, topology, box_lengths=box_lengths)
    save_topology(paths["topology"], topology, samples.positions[0])
    arrays = {
        "log_weight": samples.log_weight,
        "energy": samples.energy,
        "log_prob": samples.log_prob,
        "z": samples.z,
        "n_requested": np.int64(samples.n_requested),
        "n_written": np.int64(samples.n_written),
        "n_out_of_domain": np.int64(samples.n_out_of_domain),
        "temperature_K": np.float64(samples.temperature_K),
        "system": np.str_(samples.system),
        "energy_evaluations": np.int64(samples.energy_evaluations),
    }
    for key, value in (extra or {}).items():
        arrays[key] = np.asarray(value)
    partial = folder / "samples.partial.npz"
    np.savez(partial, **arrays)
    os.replace(partial, paths["arrays"])
    return paths


def load_samples(folder: str | os.PathLike):
    """Read a folder written by ``openmm-bg sample``, checking that its files belong together.

    Returns
    -------
    samples : SampleSet
        ``positions`` float32 nm from the DCD.
    topology : mdtraj.Topology
        From samples.pdb.

    Raises
    ------
    FileNotFoundError
        For a missing folder or file.
    ValueError
        For unreadable files, missing arrays, or arrays and frames that do not match.
    """
    import zipfile

    from ..molecules.trajectories import load_trajectory
    from ..topology import as_topology

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"sample folder not found: {folder}")
    paths = {key: folder / name for key, name in SAMPLE_FILES.items()}
    for key, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path.name} not found in {folder}; a sample folder written by openmm-bg sample holds {', '.join(SAMPLE_FILES.values())}")
    try:
        with np.load(paths["arrays"], allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"could not read {paths['arrays']}: {error}") from None
    missing = [key for key in _PER_FRAME + _SCALARS if key not in arrays]
    if missing:
        raise ValueError(f"{paths['arrays']} lacks the arrays {', '.join(missing)}; was it written by openmm-bg sample?")
    n_written = int(arrays["n_written"])
    for key in _PER_FRAME:
        if arrays[key].ndim < 1 or arrays[key].shape[0] != n_written:
            raise ValueError(f"{paths['arrays']}: {key} has shape {arrays[key].shape}, expected {n_written} rows (n_written)")
    try:
        topology = as_topology(paths["topology"])
    except Exception as error:  # mdtraj raises many types for a bad PDB
        raise ValueError(f"could not read the topology {paths['topology']}: {error}") from None
    try:
        positions = load_trajectory(paths["trajectory"], topology)
    except Exception as error:  # mdtraj raises many types for a damaged DCD
        raise ValueError(f"could not read {paths['trajectory']} with the topology {paths['topology'].name}: {error}") from None
    if positions.shape[0] != n_written:
        raise ValueError(
            f"{paths['trajectory'].name} holds {positions.shape[0]} frames but {paths['arrays'].name} describes {n_written}; "
            f"the files in {folder} do not belong together"
        )
    return (
        SampleSet(
            positions=positions,
            log_weight=arrays["log_weight"].astype(np.float64),
            energy=arrays["energy"].astype(np.float64),
            log_prob=arrays["log_prob"].astype(np.float64),
            z=arrays["z"].astype(np.float64),
            n_requested=int(arrays["n_requested"]),
            n_out_of_domain=int(arrays["n_out_of_domain"]),
            temperature_K=float(arrays["temperature_K"]),
            system=str(arrays["system"]),
            energy_evaluations=int(arrays.get("energy_evaluations", n_written)),
        ),
        topology,
    )


def report_lines(samples: SampleSet, kept: str = "written") -> list[str]:
    """The summary ``openmm-bg sample`` prints (also used by ``openmm-bg free-energy``).

    ``kept`` says what happened to the samples in the domain: ``"written"`` (``sample``),
    ``"read"`` (from a sample folder) or ``"kept"`` (drawn and used without writing).
    Besides the counts it gives the Kish ESS and the Pareto k-hat of the weights, and a
    ``warning`` line when k-hat says they cannot be trusted.
    """
    from ..analysis.diagnostics import weight_warnings
    from ..analysis.states import khat_line

    n = samples.n_requested
    ess = samples.kish_ess()
    k_hat = samples.pareto_khat()
    out = f" ({samples.n_out_of_domain} outside the coordinate domain, zero weight, not {kept})" if samples.n_out_of_domain else ""
    lines = [
        f"{'samples ' + kept:<22}{samples.n_written} of {n} drawn from the generator for {samples.system} at {samples.temperature_K:g} K{out}",
        f"Kish ESS              {100 * ess:.2f} % of {n} ({ess * n:.1f} effective samples)",
    ]
    if samples.n_finite:
        lines.append(khat_line(k_hat, n))
        lines += [f"{'warning':<22}{message}" for message in weight_warnings(k_hat, n)]
    lines.append(f"finite energies       {100 * samples.n_finite / n:.2f} % of the samples drawn")
    if samples.wall_time_s > 0:
        lines.append(f"wall time             {samples.wall_time_s:.1f} s (sampling and energies)")
    lines.append(f"energy evaluations    {samples.energy_evaluations}")
    return lines
