"""A non-editable install carries the whole package, bundled data included, and works away from the checkout."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _can_build_wheels() -> bool:
    """setuptools builds wheels itself from 70.1 on; before that it needs the ``wheel`` package."""
    import importlib.util

    import setuptools

    version = tuple(int(part) for part in setuptools.__version__.split(".")[:2] if part.isdigit())
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package built as a wheel from a copy of the checkout and installed (no dependencies) into a folder.

    Built without build isolation, so that nothing is downloaded.
    """
    if not _can_build_wheels():
        pytest.skip("this setuptools cannot build a wheel offline (it is older than 70.1 and the wheel package is missing)")
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", "runs", "outputs"))
    wheels, target = work / "wheels", work / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], check=True, cwd=work)
    (wheel,) = wheels.glob("openmm_bg-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, cwd=work)
    return target


def _run(target: Path, code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", code], cwd=target.parent, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_wheel_holds_every_module_and_bundled_file(installed):
    tracked = subprocess.run(["git", "ls-files", "openmm_bg"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    expected = {line for line in tracked.stdout.splitlines() if line.endswith(".py") or line.startswith("openmm_bg/data/")}
    found = {str(p.relative_to(installed)) for p in (installed / "openmm_bg").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert expected <= found, f"missing from the wheel: {sorted(expected - found)}"


def test_installed_copy_finds_its_data_away_from_the_checkout(installed):
    out = _run(
        installed,
        "import openmm_bg, json\n"
        "from openmm_bg.reference import DATA_DIR, load_reference\n"
        "from openmm_bg.molecules import get_system, load_bundled_trajectory\n"
        "shape = load_bundled_trajectory('ala2-vacuum', stride=1000).shape\n"
        "print('RESULT', openmm_bg.__file__, DATA_DIR, shape[0], get_system('trpzip2-implicit').n_atoms, load_reference('ala2-vacuum')['delta_f_kT'])\n",
    )
    # mdtraj's DCD reader writes its own lines to stdout
    (line,) = [line for line in out.splitlines() if line.startswith("RESULT ")]
    module, data_dir, n_frames, trpzip2_atoms, reference = line.split()[1:]
    assert module.startswith(str(installed)) and data_dir.startswith(str(installed))
    assert int(n_frames) > 0 and int(trpzip2_atoms) > 100 and float(reference) > 0
