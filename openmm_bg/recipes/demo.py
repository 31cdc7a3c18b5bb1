"""The main job end to end: a Boltzmann generator for a molecule, checked against a reference.

:func:`run_demo` trains a generator for alanine dipeptide in vacuum on the bundled MD
data (one trajectory started in each phi basin), by example and optionally by example
plus energy, draws importance-weighted samples, and estimates the free-energy
difference of two states, which it compares with the bundled parallel-tempering
reference.  Every energy evaluation is counted, including the MD that made the data.
The training is :mod:`openmm_bg.training.recipe`, as in ``openmm-bg train``; a run is
reproducible from ``DemoSettings.seed``.
:func:`openmm_bg.recipes.demo_plots.plot_demo` draws the Ramachandran plots, the loss curves and the log weights.
``openmm-bg demo`` runs both (:mod:`openmm_bg.commands.demo`).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._validation import ensure_count
from ..analysis.states import khat_line
from ..training.recipe import check_fraction, load_training_frames, train_molecular_generator
from ..training.threads import torch_threads
from ..training.trainer import MAX_SEED, TrainingConfig, read_settings, unknown_keys, write_settings

__all__ = ["DemoSettings", "DemoReport", "run_demo", "OUTPUT_FILES"]

#: what run_demo and plot_demo write in the output folder
OUTPUT_FILES = {
    "generator": "generator.pt", "trajectory": "samples.dcd", "topology": "samples.pdb", "arrays": "samples.npz",
    "report": "report.json", "history": "history.json", "settings": "settings.yaml",
    "ramachandran": "ramachandran.png", "losses": "losses.png", "log_weights": "log_weights.png",
}

DEFAULT_TRAINING_DATA = (
    {"file": "ala2-vacuum-300K-c7eq.dcd", "stride": 1, "md_steps": 10_100_000},
    {"file": "ala2-vacuum-300K-c7eq-2.dcd", "stride": 1, "md_steps": 20_100_000},
    {"file": "ala2-vacuum-300K-md.dcd", "stride": 1, "md_steps": 10_100_000},
    # 10,010,000 steps of MD plus the 20,000 that made its C7ax starting structure
    {"file": "ala2-vacuum-300K-c7ax.dcd", "stride": 1, "md_steps": 10_010_000 + 20_000},
    {"file": "ala2-vacuum-300K-c7ax-2.dcd", "stride": 1, "md_steps": 10_010_000},
    # MD held in phi > 0 by a flat-bottom restraint (zero inside 6-120 deg): that state's density
    # is what limits the estimate, and unbiased MD leaves it within a few ns
    {"file": "ala2-vacuum-300K-c7ax-basin.dcd", "stride": 1, "md_steps": 20_010_000},
)
#: Spline couplings keep the phi/psi basins apart, which affine couplings smear into bridges
#: (measured: Kish ESS 10.6 % against 3.1 % for 6 affine blocks, on 10^5 samples).
DEFAULT_ARCHITECTURE = {"n_blocks": 4, "hidden": [128, 128], "coupling": "spline"}
#: By example: a cosine learning rate and weight decay against over-fitting correlated frames.
DEFAULT_ML = {"n_iterations": 2000, "batch_size": 512, "learning_rate": 1e-3, "lr_schedule": "cosine", "weight_decay": 1e-4}
#: Then by example and energy, with the KL weight ramped in.  float32 training left room for a
#: longer, stronger stage than the 300 steps at 5e-5 with w_ml 1 of version 0.2: on the same
#: data and seed, Kish ESS 36.6 % against 20.3 %, effective samples in phi > 0 232 against 89.
DEFAULT_KL = {
    "n_iterations": 1500, "batch_size": 512, "kl_batch_size": 256, "learning_rate": 2e-4, "lr_schedule": "cosine",
    "weight_decay": 1e-4, "w_ml": 0.5, "w_kl": [[0, 0.0], [100, 1.0]], "energy_cut": 100.0, "nonfinite": "drop",
}
_MERGED = {"architecture": DEFAULT_ARCHITECTURE, "ml": DEFAULT_ML, "kl": DEFAULT_KL}


def _is_path(value) -> bool:
    """Whether ``value`` names a file: a non-empty string or a path."""
    return isinstance(value, os.PathLike) or (isinstance(value, str) and bool(value.strip()))


@dataclass
class DemoSettings:
    """Everything a demo run depends on; every field can come from a YAML file.

    Attributes
    ----------
    system : str
        A ready-made system (:func:`openmm_bg.molecules.systems.get_system`).
    training_data : list of dict
        ``{"file": name in data/ (or a path), "stride": every n-th frame, "md_steps": MD
        energy evaluations that made the file}``; the files are concatenated.  ``md_steps``
        counts in the cost whatever the stride.
    training_topology : str or None
        Topology the training files were written with (name in data/ or a path), checked
        atom by atom against the system's; None checks the atom count only.
    architecture : dict
        Keywords of :func:`openmm_bg.generator.recipes.molecular_generator_from_data` (``n_blocks``,
        ``hidden``, ...).
    ml : dict
        :class:`~openmm_bg.training.TrainingConfig` fields of stage 1, training by example
        (``seed`` defaults to ``seed``).
    kl : dict
        TrainingConfig fields of stage 2, by example and energy; ``n_iterations: 0`` skips
        it.  ``w_kl`` defaults to 1 and ``seed`` to ``seed + 1``.
    validation_fraction : float
        The final fraction of each training file is held out (never trained on); its
        negative log-likelihood, recorded during training (``ml_validation``), shows
        over-fitting in losses.png.  0 holds nothing out.
    n_samples, sample_batch_size : int
        Generator samples for the estimate, drawn in batches of this size.
    n_bootstrap : int
        Bootstrap resamples for the error of dF.
    state_a, state_b : str
        Built-in states of the system or expressions (:func:`openmm_bg.molecules.states.parse_state`);
        the estimate is ``F(state_b) - F(state_a)``.
    seed : int
        Network initialisation and bootstrap; training uses ``seed``, ``seed + 1`` and
        sampling ``seed + 2``.
    torch_threads : int
        Torch intra-op threads during the run (one is fastest for networks this small).

    ``architecture``, ``ml`` and ``kl`` are merged over the defaults: keys not given keep
    the default values.
    """

    system: str = "ala2-vacuum"
    training_data: list = field(default_factory=lambda: [dict(d) for d in DEFAULT_TRAINING_DATA])
    training_topology: str | None = "ala2-vacuum-300K-md.pdb"
    architecture: dict = field(default_factory=lambda: dict(DEFAULT_ARCHITECTURE))
    ml: dict = field(default_factory=lambda: dict(DEFAULT_ML))
    kl: dict = field(default_factory=lambda: dict(DEFAULT_KL))
    validation_fraction: float = 0.05
    n_samples: int = 100_000
    sample_batch_size: int = 10_000
    n_bootstrap: int = 200
    state_a: str = "phi_negative"
    state_b: str = "phi_positive"
    seed: int = 0
    torch_threads: int = 1

    def __post_init__(self):
        for name, default in _MERGED.items():
            value = getattr(self, name)
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ValueError(f"{name} must be a mapping of settings, got {value!r}")
            setattr(self, name, json.loads(json.dumps({**default, **value})))  # tuples to lists: YAML-safe, round-trips equal
        if not isinstance(self.training_data, (list, tuple)) or not self.training_data:
            raise ValueError(f"training_data must be a non-empty list of {{file, stride, md_steps}}, got {self.training_data!r}")
        entries = []
        for entry in self.training_data:
            if not isinstance(entry, dict) or unknown_keys(entry, {"file", "stride", "md_steps"}) or not {"file", "md_steps"} <= set(entry):
                raise ValueError(f"each training_data entry needs the keys file, md_steps (and optionally stride), got {entry!r}")
            if not _is_path(entry["file"]):
                raise ValueError(f"training_data file must be a file name or path, got {entry['file']!r}")
            entries.append({"file": str(entry["file"]), "stride": ensure_count(entry.get("stride", 1), "stride"),
                            "md_steps": ensure_count(entry["md_steps"], "md_steps", 0)})
        self.training_data = entries
        if self.training_topology is not None and not _is_path(self.training_topology):
            raise ValueError(f"training_topology must be a file name, a path or None, got {self.training_topology!r}")
        for name, minimum in (("n_samples", 1), ("sample_batch_size", 1), ("n_bootstrap", 2), ("torch_threads", 1), ("seed", 0)):
            ensure_count(getattr(self, name), name, minimum)
        if self.seed > MAX_SEED - 2:  # the stages and the sampling use seed + 1 and seed + 2
            raise ValueError(f"seed must be at most 2**63 - 3, got {self.seed}")
        self.validation_fraction = check_fraction(self.validation_fraction, "validation_fraction")
        for name in ("system", "state_a", "state_b"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        self.stage_config("ml")
        self.stage_config("kl", check=True)
        from ..generator.recipes import molecular_generator

        parameters = inspect.signature(molecular_generator).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            known = sorted(set(parameters) - {"energy", "zmatrix", "constraints"})
            unknown = sorted(set(self.architecture) - set(known))
            if unknown:
                raise ValueError(f"unknown architecture settings {unknown}; known are {known}")

    def stage_config(self, stage: str, check: bool = False) -> TrainingConfig | None:
        """The TrainingConfig of stage ``"ml"`` or ``"kl"`` with the defaults above; None for a skipped stage 2."""
        values = dict(self.ml if stage == "ml" else {"w_kl": 1.0, **self.kl})
        values.setdefault("seed", self.seed + (stage == "kl"))
        skipped = values.get("n_iterations", 0)
        if stage == "kl" and skipped == 0 and not isinstance(skipped, bool):
            if not check:
                return None
            values["n_iterations"] = 1  # validate the other keys of a skipped stage too
        try:
            return TrainingConfig.from_dict(values)
        except ValueError as error:
            raise ValueError(f"{stage}: {error}") from None

    @classmethod
    def quick(cls) -> "DemoSettings":
        """A tiny budget for tests and installation checks: under a minute on 2 cores."""
        return cls(
            training_data=[{**d, "stride": 25} for d in DEFAULT_TRAINING_DATA],  # about 6800 frames
            architecture={"n_blocks": 2, "hidden": [32, 32], "coupling": "spline", "n_bins": 4},
            ml={"n_iterations": 100, "batch_size": 256},
            kl={"n_iterations": 20, "kl_batch_size": 128, "w_kl": 0.1},
            n_samples=3000,
            sample_batch_size=1000,
            n_bootstrap=20,
        )

    def to_dict(self) -> dict:
        """Plain mapping of all settings, YAML-safe."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, base: "DemoSettings | None" = None) -> "DemoSettings":
        """Settings from a mapping over ``base`` (default: the defaults); unknown keys raise ``ValueError``."""
        if not isinstance(values, dict):
            raise ValueError(f"demo settings must be a mapping, got a {type(values).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = unknown_keys(values, known)
        if unknown:
            raise ValueError(f"unknown demo settings {unknown}; known settings are {known}")
        merged = (base or cls()).to_dict()
        for key, value in values.items():
            merged[key] = {**merged[key], **value} if key in _MERGED and isinstance(value, dict) else value
        return cls(**merged)

    @classmethod
    def from_yaml(cls, path: str | Path, base: "DemoSettings | None" = None) -> "DemoSettings":
        """Read settings from a YAML mapping over ``base``; missing keys keep their values, unknown keys raise."""
        return cls.from_dict(read_settings(path, "demo settings"), base)

    def to_yaml(self, path: str | Path) -> Path:
        """Write every setting to a YAML file."""
        return write_settings(self.to_dict(), path)


@dataclass
class DemoReport:
    """Figures of a demo run; free energies in kT, fractions in [0, 1], times in s.

    ``delta_f`` is ``F(state_b) - F(state_a)`` (None, with ``note`` saying why, when a state
    holds no weight); ``kish_ess`` is a fraction of all samples drawn; ``raw_fraction_b``
    the fraction of the written samples in state B before reweighting; ``state_stats`` has
    ``n_a``, ``n_b`` (samples), ``ess_a``, ``ess_b`` (effective samples) in each state and
    the Pareto ``k_hat`` of the weights; ``stereo`` names the stereocentres and counts the
    written samples with one of the other handedness (``n_inverted``) and their share of the
    weight (:mod:`openmm_bg.molecules.chirality`); ``warnings`` says, one sentence each, why the
    estimate cannot be trusted (:func:`openmm_bg.analysis.states.state_free_energy`).
    ``reference`` is the bundled record (``delta_f_kT``, ``error_kT``, ``file``) or None;
    ``within_0_2_kT``, ``within_2_sigma`` (twice the generator's bootstrap error) and
    ``within_2_combined_sigma`` (twice the root sum of squares of the generator's and the
    reference's errors) compare the deviation from it.  ``energy_evaluations`` holds ``md_data``, ``training``,
    ``sampling`` and ``total``; ``wall_time_s`` the phases and ``total``.
    """

    settings: DemoSettings
    system: str
    temperature_K: float
    frames: dict[str, int]
    n_samples: int
    n_written: int
    n_out_of_domain: int
    kish_ess: float
    raw_fraction_b: float
    state_stats: dict[str, float]
    delta_f: float | None
    delta_f_error: float | None
    reference: dict | None
    deviation: float | None
    within_0_2_kT: bool | None
    within_2_sigma: bool | None
    within_2_combined_sigma: bool | None
    energy_evaluations: dict[str, int]
    wall_time_s: dict[str, float]
    paths: dict[str, str]
    note: str = ""
    warnings: list = field(default_factory=list)
    stereo: dict = field(default_factory=dict)
    history_ml: list = field(repr=False, default_factory=list)
    history_kl: list = field(repr=False, default_factory=list)
    data_phi_psi: np.ndarray | None = field(repr=False, default=None)
    sample_phi_psi: np.ndarray | None = field(repr=False, default=None)
    log_weight: np.ndarray | None = field(repr=False, default=None)
    in_a: np.ndarray | None = field(repr=False, default=None)
    in_b: np.ndarray | None = field(repr=False, default=None)

    @property
    def n_frames(self) -> int:
        """Training frames in all."""
        return sum(self.frames.values())

    def to_dict(self) -> dict:
        """The figures as JSON-safe values (report.json), without histories and arrays."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.repr}
        out["settings"] = self.settings.to_dict()
        out["n_frames"] = self.n_frames
        out["within_0.2_kT"] = out.pop("within_0_2_kT")
        return out

    def _fit_lines(self) -> list[str]:
        history = self.history_ml + self.history_kl
        held = [row["ml_validation"] for row in history if "ml_validation" in row]
        if not held:
            return []
        tail = [row["ml"] for row in history[-max(1, len(history) // 20):] if "ml" in row]
        return [f"J_ML at the end        {np.mean(tail):.2f} on training batches (last 5 %), {held[-1]:.2f} on held-out frames "
                f"(a gap of {held[-1] - np.mean(tail):.2f} nats measures over-fitting)"]

    def summary(self) -> str:
        s, e, t = self.settings, self.energy_evaluations, self.wall_time_s
        a, b = s.state_a, s.state_b
        files = ", ".join(f"{n} {name}" for name, n in self.frames.items())
        stage2 = f" + {len(self.history_kl)} by example and energy" if self.history_kl else ""
        lines = [
            f"system                 {self.system} at {self.temperature_K:g} K",
            f"training frames        {self.n_frames} ({files})",
            f"training               {len(self.history_ml)} iterations by example{stage2}",
            *self._fit_lines(),
            f"samples                {self.n_samples} drawn, {self.n_out_of_domain} outside the coordinate domain",
            f"Kish ESS               {100 * self.kish_ess:.2f} % ({self.kish_ess * self.n_samples:.1f} effective samples)",
            f"states                 A = {a}, B = {b}",
            f"raw samples in B       {100 * self.raw_fraction_b:.2f} %",
            *([f"stereocentres          {self.stereo['n_inverted']} of {self.n_written} samples have the other handedness "
               f"({', '.join(self.stereo['centres'])}); their share of the weight {self.stereo['weight_share']:.2g}"] if self.stereo.get("centres") else []),
        ]
        if self.state_stats:
            lines.append(khat_line(self.state_stats["k_hat"], self.n_samples, width=23))
            lines += [f"{'state ' + key.upper():<23}{name}: {self.state_stats[f'n_{key}']} samples, Kish ESS {self.state_stats[f'ess_{key}']:.1f}"
                      for key, name in (("a", a), ("b", b))]
        lines += [f"{'warning':<23}{message}" for message in self.warnings]
        if self.delta_f is None:
            lines.append(f"F(B) - F(A)            not estimated: {self.note}")
        else:
            unreliable = "; NOT RELIABLE, see the warnings above" if self.warnings else ""
            lines.append(f"F(B) - F(A)            {self.delta_f:.3f} +- {self.delta_f_error:.3f} kT (bootstrap, {s.n_bootstrap} resamples){unreliable}")
        if self.reference is not None:
            lines.append(f"reference              {self.reference['delta_f_kT']:.3f} +- {self.reference['error_kT']:.3f} kT ({Path(self.reference['file']).name})")
        if self.deviation is not None:
            yes = {True: "", False: "not "}
            lines += [f"deviation              {self.deviation:+.3f} kT: {yes[self.within_0_2_kT]}within 0.2 kT",
                      f"{'':23s}{yes[self.within_2_sigma]}within 2 sigma of the generator alone ({2 * self.delta_f_error:.3f} kT), "
                      f"{yes[self.within_2_combined_sigma]}within 2 sigma of generator and reference combined "
                      f"({2 * math.hypot(self.delta_f_error, self.reference['error_kT']):.3f} kT)"]
        lines += [
            f"energy evaluations     {e['md_data']:,} MD data + {e['training']:,} training + {e['sampling']:,} sampling = {e['total']:,}",
            f"wall time              {t['training']:.1f} s training + {t['sampling']:.1f} s sampling; {t['total']:.1f} s in all",
        ]
        return "\n".join(lines)


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"openmm-bg demo: {message}", file=sys.stderr, flush=True)


def _data_file(name: str | None) -> Path | None:
    """A file named in the settings: a bundled file in data/, else a path."""
    from ..reference.bundled import bundled_path
    from ..molecules.systems import DATA_DIR

    if name is None:
        return None
    path = Path(name)
    if not path.is_absolute() and (DATA_DIR / path).is_file():
        return DATA_DIR / path
    if path.is_file():
        return path
    return bundled_path(name)  # raises OSError naming the bundled files


def _stereo(molecule, samples) -> dict:
    """How many written samples have a stereocentre of the other handedness than the starting structure, and their weight."""
    from ..molecules.chirality import inverted_fraction, stereocentres

    atoms = list(molecule.topology.atoms)
    centres = [str(atoms[i]) for i in stereocentres(molecule.topology)[:, 0]]
    _, inverted = inverted_fraction(samples.positions, molecule.topology, molecule.positions)
    log_w = samples.log_weight
    finite = np.isfinite(log_w)
    w = np.zeros_like(log_w)
    w[finite] = np.exp(log_w[finite] - log_w[finite].max())
    share = float(w[inverted].sum() / w.sum()) if w.sum() > 0 else float("nan")
    return {"centres": centres, "n_inverted": int(inverted.sum()), "weight_share": share}


def run_demo(settings: DemoSettings | None = None, output_dir: str | Path = "openmm-bg-demo", progress: bool = True) -> DemoReport:
    """Train, sample, reweight and compare with the reference; write the outputs to ``output_dir``.

    Writes generator.pt (reload with :func:`openmm_bg.generator.load_generator`, or use
    with ``openmm-bg sample`` / ``free-energy``), samples.dcd/.pdb/.npz (as ``openmm-bg
    sample`` writes them), report.json (:meth:`DemoReport.to_dict`), history.json (both
    stages) and settings.yaml.  Figures: :func:`openmm_bg.recipes.demo_plots.plot_demo`.
    """
    settings = settings or DemoSettings()
    if Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise NotADirectoryError(f"output folder {output_dir} is a file")
    with torch_threads(settings.torch_threads):
        return _run_demo(settings, Path(output_dir), progress)


def _run_demo(s: DemoSettings, output: Path, progress: bool) -> DemoReport:
    from ..analysis.states import state_free_energy
    from ..sampling import draw_samples, save_samples
    from ..molecules.states import bundled_reference, evaluate_states, parse_state
    from ..molecules.systems import get_system

    clock = {"start": time.perf_counter()}
    molecule = get_system(s.system)
    state_a = parse_state(s.state_a, molecule.collective_variables, molecule.states, label="state_a")
    state_b = parse_state(s.state_b, molecule.collective_variables, molecule.states, label="state_b")
    files = [(_data_file(entry["file"]), entry["stride"]) for entry in s.training_data]
    _say(progress, f"loading {len(files)} training files for {molecule.name}")
    data = load_training_frames(molecule, files, s.validation_fraction, trajectory_topology=_data_file(s.training_topology))
    positions = data.positions
    clock["loaded"] = time.perf_counter()
    stages = [config for config in (s.stage_config("ml"), s.stage_config("kl")) if config is not None]
    training = train_molecular_generator(molecule, data, stages, seed=s.seed, architecture=s.architecture, progress=progress,
                                         announce=lambda line: _say(progress, line))
    generator, trainers = training.generator, training.trainers
    clock["trained"] = time.perf_counter()
    output.mkdir(parents=True, exist_ok=True)
    paths = {"generator": training.save(output / OUTPUT_FILES["generator"], molecule, {"demo_settings": s.to_dict()})}

    _say(progress, f"drawing {s.n_samples} samples")
    samples = draw_samples(
        generator, s.n_samples, seed=s.seed + 2, batch_size=s.sample_batch_size, progress=progress,
        system=molecule.name, temperature_K=molecule.temperature,
    )
    box = None if molecule.box_vectors is None else np.diag(molecule.box_vectors)
    paths.update(save_samples(samples, output, molecule.topology, box_lengths=box, extra={"seed": s.seed + 2, "batch_size": s.sample_batch_size}))
    clock["sampling"] = time.perf_counter()

    in_a, in_b = evaluate_states([state_a, state_b], samples.positions)
    stereo = _stereo(molecule, samples)
    note, stats, warnings_found = "", {}, []
    try:
        result = state_free_energy(
            samples.log_weight, in_a, in_b, n_out_of_domain=samples.n_out_of_domain, n_bootstrap=s.n_bootstrap, seed=s.seed, names=(s.state_a, s.state_b),
            warn=False,  # the summary prints them
        )
        stats = {key: result[key] for key in ("n_a", "n_b", "ess_a", "ess_b", "n_both", "k_hat")}
        delta_f, error = result["delta_f_kT"], result["error_kT"]
        warnings_found = list(result["warnings"])
    except ValueError as failure:  # a state without weight: keep the outputs, say why
        delta_f = error = None
        note = str(failure)
    reference = bundled_reference(molecule.name, state_a.definition, state_b.definition, molecule.temperature)
    if reference is not None:
        reference = {key: reference[key] for key in ("delta_f_kT", "error_kT", "file")}
    deviation = None if reference is None or delta_f is None else delta_f - reference["delta_f_kT"]
    cvs = molecule.collective_variables
    has_rama = "phi" in cvs and "psi" in cvs
    clock["end"] = time.perf_counter()

    stage_times = training.wall_time_s + [0.0]  # a skipped stage 2 took no time
    times = {"loading": clock["loaded"] - clock["start"], "training_ml": stage_times[0], "training_kl": stage_times[1],
             "training": stage_times[0] + stage_times[1], "sampling": clock["sampling"] - clock["trained"],
             "analysis": clock["end"] - clock["sampling"], "total": clock["end"] - clock["start"]}
    report = DemoReport(
        settings=s, system=molecule.name, temperature_K=float(molecule.temperature), frames=data.frames,
        n_samples=samples.n_requested, n_written=samples.n_written, n_out_of_domain=samples.n_out_of_domain,
        kish_ess=samples.kish_ess(), raw_fraction_b=float(np.mean(in_b)), stereo=stereo, state_stats=stats,
        delta_f=delta_f, delta_f_error=error, reference=reference, deviation=deviation,
        within_0_2_kT=None if deviation is None else bool(abs(deviation) <= 0.2),
        within_2_sigma=None if deviation is None else bool(abs(deviation) <= 2 * error),
        within_2_combined_sigma=None if deviation is None else bool(abs(deviation) <= 2 * math.hypot(error, reference["error_kT"])),
        energy_evaluations={"md_data": sum(entry["md_steps"] for entry in s.training_data), "training": training.energy_evaluations,
                            "sampling": samples.energy_evaluations},
        wall_time_s=times,
        paths={key: str(path) for key, path in paths.items()},
        note=note,
        warnings=warnings_found,
        history_ml=trainers[0].history,
        history_kl=trainers[1].history if len(trainers) > 1 else [],
        data_phi_psi=np.stack([cvs["phi"](positions), cvs["psi"](positions)], 1) if has_rama else None,
        sample_phi_psi=np.stack([cvs["phi"](samples.positions), cvs["psi"](samples.positions)], 1) if has_rama else None,
        log_weight=samples.log_weight, in_a=in_a, in_b=in_b,
    )
    report.energy_evaluations["total"] = sum(report.energy_evaluations.values())
    for key in ("report", "history", "settings"):
        report.paths[key] = str(output / OUTPUT_FILES[key])
    s.to_yaml(report.paths["settings"])
    Path(report.paths["history"]).write_text(json.dumps({"ml": report.history_ml, "kl": report.history_kl}))
    Path(report.paths["report"]).write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    return report

