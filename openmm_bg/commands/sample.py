"""Draw importance-weighted samples from a trained generator and write them to a folder.

The generator is read from a checkpoint (``openmm-bg train`` writes one); its target
energy is the OpenMM system named in the checkpoint's metadata at the checkpoint's
temperature, or the one given with --system or --structure.  N latent points are
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
        energy is not finite.  Self-normalise it (``openmm_bg.reweighting``).
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

Read a folder back in Python with :func:`openmm_bg.commands.sample.load_samples`.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SampleSet",
    "SAMPLE_FILES",
    "configure",
    "run",
    "add_system_arguments",
    "resolve_molecule",
    "load_checkpoint",
    "draw_samples",
    "save_samples",
    "load_samples",
    "report_lines",
]

#: file names in a sample folder
SAMPLE_FILES = {"trajectory": "samples.dcd", "topology": "samples.pdb", "arrays": "samples.npz"}
_PER_FRAME = ("log_weight", "energy", "log_prob", "z")
_SCALARS = ("n_requested", "n_written", "n_out_of_domain", "temperature_K", "system")


@dataclass
class SampleSet:
    """Generator samples that lie in the coordinate domain, with their weights.

    Attributes
    ----------
    positions : ndarray, shape (n_written, n_atoms, 3), nm
        float64 when drawn, float32 when read back from a DCD.
    log_weight, energy, log_prob : ndarray, shape (n_written,), float64
        As documented for samples.npz (:mod:`openmm_bg.commands.sample`).
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
        from ..reweighting import kish_ess

        if self.n_finite == 0:
            return 0.0
        return kish_ess(self.all_log_weights)


def add_system_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose the system whose energy weights the samples."""
    parser.add_argument("--system", help="a named system (see openmm_bg.systems.list_systems) instead of the one in the checkpoint")
    parser.add_argument("--structure", type=Path, help="your own PDB (or .inpcrd with --system-file .prmtop) instead of a named system")
    parser.add_argument("--system-file", type=Path, help="serialized System (.xml) or Amber .prmtop for --structure")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``openmm-bg sample``."""
    parser.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="generator checkpoint (.pt), e.g. from openmm-bg train")
    parser.add_argument("-n", "--n-samples", type=int, required=True, metavar="N", help="number of samples to draw")
    parser.add_argument("--output", "-o", type=Path, default=Path("openmm-bg-samples"), help="output folder (default ./openmm-bg-samples)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent draws (default 0)")
    parser.add_argument("--batch-size", type=int, default=10000, help="samples per batch (default 10000)")
    add_system_arguments(parser)
    parser.add_argument("--no-progress", action="store_true")


def resolve_molecule(metadata: dict[str, Any], system: str | None, structure: Path | None, system_file: Path | None, source: Path):
    """The system chosen by --system or --structure, else the registered one ``metadata["system"]`` names.

    ``source`` is named in the error when neither is given and the metadata names no
    registered system.
    """
    from ..systems import get_system, list_systems, load_system

    if system and structure:
        raise ValueError("give either --system or --structure, not both")
    if system:
        return get_system(system)
    if structure is not None:
        if not Path(structure).is_file():
            raise FileNotFoundError(f"structure file not found: {structure}")
        if system_file is not None and not Path(system_file).is_file():
            raise FileNotFoundError(f"system file not found: {system_file}")
        return load_system(structure, system_file)
    if system_file is not None:
        raise ValueError("--system-file goes with --structure")
    name = metadata.get("system")
    if isinstance(name, str) and name in list_systems():
        return get_system(name)
    named = f"names the system {name!r}, which is not a registered system" if name else "names no system"
    raise ValueError(f"{source} {named}; pass --system NAME (one of {', '.join(list_systems())}) or --structure with your own files")


def load_checkpoint(
    checkpoint: str | os.PathLike,
    *,
    system: str | None = None,
    structure: str | os.PathLike | None = None,
    system_file: str | os.PathLike | None = None,
):
    """A generator checkpoint with its target energy attached.

    Parameters
    ----------
    checkpoint : path
        Written by :func:`openmm_bg.generator.save_generator` (e.g. by ``openmm-bg train``).
    system : str, optional
        A registered system to use instead of the checkpoint's ``metadata["system"]``.
    structure, system_file : path, optional
        Your own files instead (see :func:`openmm_bg.systems.load_system`).

    Returns
    -------
    generator : BoltzmannGenerator
        With ``OpenMMEnergy(molecule.system, temperature, platform=molecule.platform)`` as target.
    molecule : MolecularSystem
    temperature : float, K
        The checkpoint's ``temperature_K``, else the system's temperature.
    metadata : dict
    """
    from ..energies import OpenMMEnergy
    from ..generator import load_generator, read_torch_file

    checkpoint = Path(checkpoint)
    bare = load_generator(checkpoint)  # checks the file and gives the configuration shape
    metadata = read_torch_file(checkpoint, "generator checkpoint").get("metadata") or {}
    if not isinstance(metadata, dict):
        metadata = {}
    molecule = resolve_molecule(
        metadata, system, None if structure is None else Path(structure), None if system_file is None else Path(system_file), checkpoint
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
    so the same seed and batch size give identical samples.  Samples with non-finite
    positions or density are dropped and counted (their weight is zero); energies
    are computed only for the others, which are the energy evaluations reported.

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

    from ..reweighting import log_importance_weights

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"the number of samples must be a positive integer, got {n!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"the batch size must be a positive integer, got {batch_size!r}")
    if generator.target is None:
        raise ValueError("the generator has no target energy; load it with load_checkpoint or load_generator(path, energy)")
    rng = torch.Generator().manual_seed(int(seed))
    start = time.perf_counter()
    kept: dict[str, list[np.ndarray]] = {"positions": [], "z": [], "log_prob": [], "energy": []}
    n_out = 0
    with tqdm(total=n, disable=not progress, desc="sampling", unit="samples", leave=False) as bar:
        for first in range(0, n, batch_size):
            size = min(batch_size, n - first)
            with torch.no_grad():
                x, z, log_prob = generator.propose(size, generator=rng)
                ok = torch.isfinite(x.reshape(size, -1)).all(dim=1) & torch.isfinite(log_prob)
                u = generator.energy(x[ok]) if bool(ok.any()) else x.new_zeros(0)
            u = u.detach().double().cpu().numpy()
            kept["energy"].append(np.where(np.isnan(u), np.inf, u))  # a NaN energy is a failed one
            kept["positions"].append(x[ok].detach().double().cpu().numpy())
            kept["z"].append(z[ok].detach().double().cpu().numpy())
            kept["log_prob"].append(log_prob[ok].detach().double().cpu().numpy())
            n_out += int((~ok).sum())
            bar.update(size)
    arrays = {key: np.concatenate(values) for key, values in kept.items()}
    return SampleSet(
        positions=arrays["positions"],
        log_weight=log_importance_weights(arrays["energy"], arrays["log_prob"]),
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
    from ..data import save_topology, save_trajectory

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

    from ..data import as_topology, load_trajectory

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


def report_lines(samples: SampleSet) -> list[str]:
    """The summary ``openmm-bg sample`` prints (also used by ``openmm-bg free-energy``)."""
    n = samples.n_requested
    ess = samples.kish_ess()
    out = f" ({samples.n_out_of_domain} outside the coordinate domain, zero weight, not written)" if samples.n_out_of_domain else ""
    lines = [
        f"samples written       {samples.n_written} of {n} drawn from the generator for {samples.system} at {samples.temperature_K:g} K{out}",
        f"Kish ESS              {100 * ess:.2f} % of {n} ({ess * n:.1f} effective samples)",
        f"finite energies       {100 * samples.n_finite / n:.2f} % of the samples drawn",
    ]
    if samples.wall_time_s > 0:
        lines.append(f"wall time             {samples.wall_time_s:.1f} s (sampling and energies)")
    lines.append(f"energy evaluations    {samples.energy_evaluations}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Run ``openmm-bg sample``; return the exit status."""
    if args.n_samples < 1 or args.batch_size < 1:
        raise ValueError(f"-n and --batch-size must be positive, got {args.n_samples} and {args.batch_size}")
    generator, molecule, temperature, _ = load_checkpoint(args.checkpoint, system=args.system, structure=args.structure, system_file=args.system_file)
    samples = draw_samples(
        generator, args.n_samples, seed=args.seed, batch_size=args.batch_size, progress=not args.no_progress,
        system=molecule.name, temperature_K=temperature,
    )
    box = None if molecule.box_vectors is None else np.diag(molecule.box_vectors)
    paths = save_samples(samples, args.output, molecule.topology, box_lengths=box, extra={"seed": args.seed, "batch_size": args.batch_size})
    for line in report_lines(samples):
        print(line)
    for key, path in paths.items():
        print(f"{SAMPLE_FILES[key]:<21} {path}")
    return 0
