"""What the Boltzmann-generator moves share: the generator, random streams, serialisation, energies.

openmmtools deep-copies a move once per thermodynamic state, serialises every move
at every checkpoint and rebuilds it with ``__setstate__`` (``__init__`` is not
called).  So the state of a move is kept in plain values:

* the generator is referenced by its checkpoint path (written with
  :func:`openmm_bg.generator.save_generator`) and reloaded by ``__setstate__``;
* randomness comes from a :class:`numpy.random.SeedSequence` described by its
  entropy, a spawn key and a counter of applications: each ``apply`` draws from
  ``SeedSequence(entropy, spawn_key + (0, n_applied))``, and each deep copy gets
  the spawn key ``spawn_key + (1, n_copies)``;
* openmmtools' ``SequenceMove``, ``WeightedMove`` and the storage copy moves by
  serialising and deserialising them, so ``__setstate__`` also branches the stream:
  the k-th restoration (in this process) of a state with spawn key ``key`` gets
  ``key + (2, k)``.  Copies therefore never share a stream, and the same seed, in a
  fresh process, reproduces the same run.  A move restored from storage continues
  with a new, independent stream, not with the one it would have drawn.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import openmm
import openmm.unit as unit
import torch
from openmmtools.mcmc import MCMCMove

from .._validation import ensure_count
from ..generator.checkpoints import load_generator, read_torch_file
from ..generator.model import BoltzmannGenerator
from .proposals import rigid_frame_atoms

__all__ = ["GeneratorMoveBase", "clear_generator_cache"]

# deserialised copies of a move share one loaded generator per checkpoint file
_GENERATOR_CACHE: dict[tuple[str, int, int], BoltzmannGenerator] = {}
# how often each (entropy, spawn key) has been restored, so that restored copies branch apart
_RESTORE_COUNTS: dict[tuple[int, tuple[int, ...]], int] = {}


def clear_generator_cache() -> None:
    """Forget the generators loaded by deserialised moves (they are shared per checkpoint file)."""
    _GENERATOR_CACHE.clear()


def _file_key(path: Path) -> tuple[str, int, int]:
    """A cache key that changes when the file does: resolved path, modification time, size."""
    stat = path.stat()
    return (str(path), stat.st_mtime_ns, stat.st_size)


def _load_cached(path: Path) -> BoltzmannGenerator:
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"generator checkpoint of the move not found: {path}")
    key = _file_key(path)
    if key not in _GENERATOR_CACHE:
        generator = load_generator(path)
        generator.eval()
        _GENERATOR_CACHE[key] = generator
    return _GENERATOR_CACHE[key]


# per checkpoint file: the per-particle nonbonded parameters of the molecule it stores (None: none stored)
_STORED_NONBONDED: dict[tuple[str, int, int], tuple[str, np.ndarray | None]] = {}


def _nonbonded_parameters(system: openmm.System) -> np.ndarray | None:
    """(charge e, sigma nm, epsilon kJ/mol) of every particle in the first NonbondedForce, or None."""
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            rows = [force.getParticleParameters(i) for i in range(force.getNumParticles())]
            return np.array([[q.value_in_unit(unit.elementary_charge), s.value_in_unit(unit.nanometer), e.value_in_unit(unit.kilojoule_per_mole)]
                             for q, s, e in rows])
    return None


def _stored_nonbonded(path: Path) -> tuple[str, np.ndarray | None]:
    """The name and nonbonded parameters of the molecule a generator checkpoint stores."""
    path = path.resolve()
    key = _file_key(path)
    if key not in _STORED_NONBONDED:
        state = read_torch_file(path, "generator checkpoint of the move")
        metadata = state.get("metadata", {}) if isinstance(state, dict) else {}
        molecule = metadata.get("molecule") if isinstance(metadata, dict) else None
        xml = molecule.get("system_xml") if isinstance(molecule, dict) else None
        if xml:
            _STORED_NONBONDED[key] = (str(molecule.get("name", "?")), _nonbonded_parameters(openmm.XmlSerializer.deserialize(xml)))
        else:
            _STORED_NONBONDED[key] = ("?", None)
    return _STORED_NONBONDED[key]


def _same_weights(generator: BoltzmannGenerator, path: Path) -> bool:
    state = read_torch_file(path, "generator checkpoint of the move")  # checksums checked, as load_generator does
    saved = state.get("state_dict", {}) if isinstance(state, dict) else {}
    current = generator.state_dict()
    if set(saved) != set(current):
        return False
    return all(torch.equal(saved[key].to(current[key].dtype), current[key]) for key in current)


class GeneratorMoveBase(MCMCMove):
    """Base of the moves that propose with a :class:`BoltzmannGenerator`.

    Parameters
    ----------
    generator : BoltzmannGenerator, str or Path
        The generator, or the path of its checkpoint.  Its configurations must have
        shape ``(n_particles, 3)`` in nm.  The move only reads it (no training).
    checkpoint : str or Path, optional
        With an in-memory generator: the checkpoint file that holds exactly its
        weights, so the move can be serialised.  Without one, serialisation raises.
    seed : int, optional
        Root of all random streams; ``None`` draws fresh entropy from the OS.
    """

    def __init__(self, generator: BoltzmannGenerator | str | Path, checkpoint: str | Path | None = None, seed: int | None = None):
        super().__init__()
        if isinstance(generator, (str, Path)):
            if checkpoint is not None and Path(checkpoint).resolve() != Path(generator).resolve():
                raise ValueError(f"got a generator path {generator!s} and a different checkpoint {checkpoint!s}; give one")
            checkpoint = Path(generator)
            generator = _load_cached(checkpoint)
        elif not isinstance(generator, BoltzmannGenerator):
            raise TypeError(f"generator must be a BoltzmannGenerator or a checkpoint path, got {type(generator).__name__}")
        elif checkpoint is not None:
            checkpoint = Path(checkpoint)
            if not checkpoint.is_file():
                raise FileNotFoundError(f"checkpoint {checkpoint} does not exist; write it with openmm_bg.generator.save_generator first")
            if not _same_weights(generator, checkpoint):
                raise ValueError(f"checkpoint {checkpoint} does not hold the weights of the given generator")
        self._check_generator(generator)
        if seed is not None:
            seed = ensure_count(seed, "seed", minimum=0)
        self._generator = generator
        self._checkpoint = None if checkpoint is None else str(Path(checkpoint).resolve())
        self._entropy = int(np.random.SeedSequence(seed).entropy)
        self._spawn_key: tuple[int, ...] = ()
        self._n_copies = 0
        self._n_applied = 0
        self.n_accepted = 0
        self.n_proposed = 0
        self.n_nonfinite = 0
        self.n_out_of_domain = 0

    # --- generator ----------------------------------------------------------------------

    @staticmethod
    def _check_generator(generator: BoltzmannGenerator) -> None:
        """Raise ``ValueError`` for a generator this kind of move cannot propose with."""
        if len(generator.event_shape) != 2 or generator.event_shape[1] != 3:
            raise ValueError(f"the generator must make configurations of shape (n_particles, 3), got event_shape {generator.event_shape}")

    def _n_particles(self) -> int:
        """Particles of the System the generator's configurations belong to."""
        return self._generator.event_shape[0]

    @property
    def generator(self) -> BoltzmannGenerator:
        """The generator the move proposes with (shared by all copies of the move)."""
        return self._generator

    @property
    def checkpoint(self) -> str | None:
        """Absolute path of the generator checkpoint, or ``None`` for an in-memory generator."""
        return self._checkpoint

    @property
    def frame_atoms(self) -> tuple[int, int, int] | None:
        """Atoms whose pose is kept when the generator removes the rigid body, else ``None``."""
        return rigid_frame_atoms(self._generator)

    # --- statistics ---------------------------------------------------------------------

    @property
    def statistics(self) -> dict[str, int]:
        """Counters: ``n_accepted``, ``n_proposed``, and of the rejected proposals,
        ``n_nonfinite`` (non-finite positions or energy) and ``n_out_of_domain``
        (internal coordinates outside the principal domain)."""
        return dict(n_accepted=self.n_accepted, n_proposed=self.n_proposed, n_nonfinite=self.n_nonfinite, n_out_of_domain=self.n_out_of_domain)

    @statistics.setter
    def statistics(self, value: dict[str, int]) -> None:
        self.n_accepted = int(value["n_accepted"])
        self.n_proposed = int(value["n_proposed"])
        self.n_nonfinite = int(value.get("n_nonfinite", 0))
        self.n_out_of_domain = int(value.get("n_out_of_domain", 0))

    @property
    def acceptance_rate(self) -> float:
        """``n_accepted / n_proposed`` (NaN before the first proposal)."""
        return self.n_accepted / self.n_proposed if self.n_proposed else float("nan")

    # --- randomness ---------------------------------------------------------------------

    def _random_streams(self) -> tuple[torch.Generator, np.random.Generator]:
        """Fresh generators for one ``apply``: torch for latents, numpy for acceptance."""
        sequence = np.random.SeedSequence(self._entropy, spawn_key=self._spawn_key + (0, self._n_applied))
        self._n_applied += 1
        torch_sequence, numpy_sequence = sequence.spawn(2)
        torch_generator = torch.Generator().manual_seed(int(torch_sequence.generate_state(1, np.uint64)[0]))
        return torch_generator, np.random.default_rng(numpy_sequence)

    def __deepcopy__(self, memo: dict) -> "GeneratorMoveBase":
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            # the generator is read-only here, so copies share it instead of duplicating weights
            setattr(clone, key, value if key == "_generator" else copy.deepcopy(value, memo))
        clone._spawn_key = self._spawn_key + (1, self._n_copies)
        clone._n_copies = 0
        clone._n_applied = 0
        self._n_copies += 1
        return clone

    # --- serialisation ------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        if self._checkpoint is None:
            raise ValueError(
                f"{type(self).__name__} holds an in-memory generator without a checkpoint; save it with "
                "openmm_bg.generator.save_generator and pass checkpoint=... (or the path itself) to serialise the move"
            )
        # the 128-bit entropy goes in as a string: YAML readers differ on big integers
        state = dict(
            checkpoint=self._checkpoint,
            entropy=str(self._entropy),
            spawn_key=[int(k) for k in self._spawn_key],
            n_copies=self._n_copies,
            n_applied=self._n_applied,
        )
        state.update(self.statistics)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._checkpoint = str(state["checkpoint"])
        self._generator = _load_cached(Path(self._checkpoint))
        self._entropy = int(state["entropy"])
        saved_key = tuple(int(k) for k in state["spawn_key"])
        restored = _RESTORE_COUNTS.get((self._entropy, saved_key), 0)
        _RESTORE_COUNTS[(self._entropy, saved_key)] = restored + 1
        self._spawn_key = saved_key + (2, restored)
        self._n_copies = 0
        self._n_applied = 0
        self.statistics = state

    # --- OpenMM -------------------------------------------------------------------------

    def _checked_context(self, thermodynamic_state: Any, context_cache: Any) -> openmm.Context:
        context, _ = self._get_context_cache(context_cache).get_context(thermodynamic_state)
        system = context.getSystem()
        n = system.getNumParticles()
        if self._n_particles() != n:
            raise ValueError(f"the generator makes configurations of {self._n_particles()} particles, the System has {n}")
        self._check_same_molecule(system)
        if system.getNumConstraints():
            raise ValueError(
                f"the System has {system.getNumConstraints()} constraints; the moves need an unconstrained System "
                "(constrained MD samples a different, mass-weighted density)"
            )
        if self.frame_atoms is not None and system.usesPeriodicBoundaryConditions():
            raise ValueError("a generator that removes the rigid body needs an energy invariant under rigid motion, but the System is periodic")
        return context

    def _check_same_molecule(self, system: openmm.System) -> None:
        """``ValueError`` if the checkpoint stores a molecule whose atoms differ from the System's.

        Compared: the charge, sigma and epsilon of every particle in the first
        NonbondedForce, which neither hydrogen-mass repartitioning nor added restraints,
        thermostats or barostats change.  Without a checkpoint, a stored molecule or a
        NonbondedForce on both sides, only the particle count was checked.
        """
        if self._checkpoint is None or not Path(self._checkpoint).is_file():
            return
        name, stored = _stored_nonbonded(Path(self._checkpoint))
        given = _nonbonded_parameters(system) if stored is not None else None
        if stored is None or given is None or stored.shape != given.shape:
            return
        differ = np.flatnonzero(~np.all(np.isclose(stored, given, rtol=1e-6, atol=1e-9), axis=1))
        if differ.size:
            i = int(differ[0])
            raise ValueError(
                f"the generator was trained for another molecule ({name}, stored in {self._checkpoint}): particle {i} has "
                f"charge, sigma, epsilon {given[i].round(6).tolist()} in the System, {stored[i].round(6).tolist()} there "
                f"({differ.size} particles differ)"
            )

    @staticmethod
    def _reduced_potentials(thermodynamic_state: Any, context: openmm.Context, x: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Reduced potential (kT) of each valid configuration ``x`` (n, n_atoms, 3) nm; ``nan`` elsewhere."""
        u = np.full(len(x), np.nan)
        for i in np.flatnonzero(valid):
            try:
                context.setPositions(x[i])
                u[i] = thermodynamic_state.reduced_potential(context)
            except openmm.OpenMMException:
                u[i] = np.nan
        return u

    @staticmethod
    def _current(thermodynamic_state: Any, sampler_state: Any, context: openmm.Context) -> tuple[np.ndarray, float]:
        """Copy of the current positions (n_atoms, 3) nm and their reduced potential (kT)."""
        x = np.array(sampler_state.positions.value_in_unit(unit.nanometer), dtype=np.float64)
        sampler_state.apply_to_context(context, ignore_velocities=True)
        u = float(thermodynamic_state.reduced_potential(context))
        if not np.isfinite(u):
            raise ValueError(f"the current configuration has a non-finite reduced potential ({u}); the move cannot start from it")
        return x, u

    @staticmethod
    def _accept(sampler_state: Any, x: np.ndarray) -> None:
        sampler_state.positions = unit.Quantity(np.array(x, dtype=np.float64), unit.nanometer)

    def _independence_chain(self, sampler_state: Any, rng: np.random.Generator, x_new: np.ndarray, u_new: np.ndarray,
                            log_q_new: np.ndarray, in_domain: np.ndarray, u_old: float, log_q_old: float) -> None:
        """Independence Metropolis-Hastings through a batch of proposals, then update the counters and the state.

        ``log_q`` is the log proposal density of each configuration (current and new); a proposal
        outside the domain, or with a non-finite energy or density, is rejected and counted.
        One uniform is drawn per proposal, used or not, so the stream does not depend on outcomes.
        """
        usable = in_domain & np.isfinite(u_new) & np.isfinite(log_q_new)
        log_uniform = np.log(rng.random(len(u_new)))
        current, u_current, log_q_current = None, u_old, log_q_old
        for i in np.flatnonzero(usable):
            if log_uniform[i] < -(u_new[i] - u_current) + (log_q_current - log_q_new[i]):
                current, u_current, log_q_current = i, u_new[i], log_q_new[i]
                self.n_accepted += 1
        self.n_proposed += len(u_new)
        self.n_out_of_domain += int((~in_domain).sum())
        self.n_nonfinite += int((in_domain & ~usable).sum())
        if current is not None:
            self._accept(sampler_state, x_new[current])
