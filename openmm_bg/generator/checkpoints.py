"""Generator checkpoints: the architecture as a recipe name and plain keywords, the weights as a state dict."""

from __future__ import annotations

import importlib
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from ..energies.base import Energy
from .model import BoltzmannGenerator

__all__ = ["CHECKPOINT_FORMAT", "LEGACY_BUILDERS", "save_generator", "load_generator", "read_torch_file"]


#: format tag written into every generator checkpoint
CHECKPOINT_FORMAT = "openmm_bg.generator/1"


#: builders as checkpoints written before the package layout of version 0.2 name them
LEGACY_BUILDERS = {
    "openmm_bg.builders.realnvp_generator": "openmm_bg.generator.recipes.realnvp_generator",
    "openmm_bg.builders.molecular_generator": "openmm_bg.generator.recipes.molecular_generator",
    "openmm_bg.builders.molecular_generator_from_data": "openmm_bg.generator.recipes.molecular_generator_from_data",
}


def _import_builder(path: str) -> Callable[..., BoltzmannGenerator]:
    path = LEGACY_BUILDERS.get(path, path)
    module_name, _, attribute = path.rpartition(".")
    if not module_name.startswith("openmm_bg") and module_name.split(".")[0] not in _TRUSTED_BUILDER_PACKAGES:
        raise ValueError(f"generator builder {path!r} is outside openmm_bg; register its package in openmm_bg.generator.checkpoints._TRUSTED_BUILDER_PACKAGES")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:  # ValueError: a name with a null byte or an empty part
        raise ValueError(f"cannot import generator builder {path!r}: {_first_line(error)}") from error


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
        e.g. ``"openmm_bg.recipes.toy.build_toy_generator"``.
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
    bytes, another format) or one whose content is damaged: ``torch.save`` writes a zip
    archive with a CRC-32 checksum of every member, which torch itself does not check
    on reading, so a flipped bit in the weights would otherwise load as other weights.
    Only tensors and plain containers are loaded (``weights_only=True``), never pickled code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"could not read {what} {path}: it is not a valid openmm_bg {what} (the file is empty)")
    _check_archive(path, what)
    try:
        with warnings.catch_warnings():
            # a foreign pickle makes torch warn about its protocol before it fails: the error below says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for a corrupt file
        raise ValueError(f"could not read {what} {path}: it is not a valid openmm_bg {what} (truncated, damaged or another kind of file; {_first_line(error)})") from error


def _check_archive(path: Path, what: str) -> None:
    """Raise a one-line ``ValueError`` when ``path`` is a zip archive (torch's format) with a member that fails its checksum.

    A file that is not a zip archive (torch's legacy format, or not torch's at all) is left
    to ``torch.load``.  A member with a zero checksum is not checked: torch writes zeros
    after ``torch.serialization.set_crc32_options(False)`` (and an empty member's is zero).
    """
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if member.CRC != 0:
                    with archive.open(member) as stream:  # zipfile compares the checksum at the end of the member
                        while stream.read(1 << 20):
                            pass
    except Exception as error:  # zipfile raises many types for a damaged directory or member header
        raise ValueError(f"could not read {what} {path}: it is damaged ({_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
    """The gist of an exception in one short line (torch's messages run over many lines)."""
    text = str(error)
    # torch's weights-only refusal starts with advice on weights_only=False, which does not apply here
    text = text.split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    gist = re.split(r"(?<=\.)\s", lines[0])[0] if lines else ""
    gist = gist if len(gist) <= 160 else gist[:157] + "..."
    return f"{type(error).__name__}: {gist}" if gist else type(error).__name__


def _one_line(error: BaseException, limit: int = 400) -> str:
    """An exception's whole message on one line (load_state_dict lists each missing key on its own line)."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_generator(path: str | Path, energy: Energy | Callable[[Tensor], Tensor] | None = None) -> BoltzmannGenerator:
    """Rebuild a generator from :func:`save_generator`; ``energy`` becomes its target (or ``None``).

    Raises ``FileNotFoundError`` for a missing file and a one-line ``ValueError`` for a
    file that is not a readable generator checkpoint: damaged, of another kind, with a
    builder outside openmm_bg, or with keywords or weights its builder does not take.
    """
    state = read_torch_file(path, "generator checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not an openmm_bg generator checkpoint (expected format {CHECKPOINT_FORMAT!r}, got {got!r})")
    missing = [key for key in ("builder", "builder_kwargs", "state_dict") if key not in state]
    if missing:
        raise ValueError(f"{path} is not a valid openmm_bg generator checkpoint: it lacks {', '.join(missing)}")
    builder, builder_kwargs, weights = state["builder"], state["builder_kwargs"], state["state_dict"]
    if not isinstance(builder, str):
        raise ValueError(f"{path} is not a valid openmm_bg generator checkpoint: its builder is a {type(builder).__name__}, expected a dotted name")
    if not isinstance(builder_kwargs, Mapping) or not all(isinstance(key, str) for key in builder_kwargs):
        raise ValueError(f"{path} is not a valid openmm_bg generator checkpoint: its builder_kwargs are not a mapping of names to values")
    if not isinstance(weights, Mapping) or not all(isinstance(key, str) and isinstance(value, Tensor) for key, value in weights.items()):
        raise ValueError(f"{path} is not a valid openmm_bg generator checkpoint: its state_dict is not a mapping of names to tensors")
    build = _import_builder(builder)
    try:
        generator = build(energy=energy, **builder_kwargs)
    except Exception as error:  # a builder fails in its own ways (TypeError, torch's RuntimeError ...) on keywords it was not written with
        raise ValueError(f"generator checkpoint {path}: its builder {builder} cannot build a generator from its builder_kwargs ({_first_line(error)})") from error
    if not isinstance(generator, BoltzmannGenerator):
        raise ValueError(f"generator checkpoint {path}: its builder {builder} made a {type(generator).__name__}, not a BoltzmannGenerator")
    try:
        generator.load_state_dict(weights)
    except RuntimeError as error:
        raise ValueError(f"generator checkpoint {path} does not fit the architecture its builder makes: {_one_line(error)}") from error
    return generator
