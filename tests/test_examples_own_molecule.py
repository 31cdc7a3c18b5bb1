"""examples/own_molecule_from_amber.py runs as written (its --quick budget), on the Hamiltonian openmmtools builds."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import openmm
import openmm.unit as unit
import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_example():
    spec = importlib.util.spec_from_file_location("own_molecule_example", ROOT / "examples" / "own_molecule_from_amber.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _energies_kjmol(system: openmm.System, positions: np.ndarray) -> np.ndarray:
    """Potential energies on the Reference platform, kJ/mol; positions (n, n_atoms, 3) nm."""
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    energies = []
    for x in positions:
        context.setPositions(x)
        energies.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    return np.asarray(energies)


@pytest.mark.timeout(300)
def test_own_molecule_example_quick(tmp_path, capsys):
    from openmmtools.testsystems import AlanineDipeptideImplicit

    from openmm_bg.sampling import load_checkpoint

    report = load_example().main(["--quick", "--no-progress", "--output", str(tmp_path)])
    out = capsys.readouterr().out
    assert "Hamiltonian: Amber prmtop alanine-dipeptide.prmtop with alanine-dipeptide.crd; implicit solvent OBC1;" in out
    assert "phi_ALA2" in out.splitlines()[2] and "F_B - F_A = " in out and "MD frames: " in out
    assert "Pareto k-hat" in out  # the weights' diagnostics are printed with the estimate
    molecule, samples, estimate = report["molecule"], report["samples"], report["estimate"]

    # the samples' energies are those of openmmtools' AlanineDipeptideImplicit (OBC1, no constraints)
    theirs = AlanineDipeptideImplicit(constraints=None).system
    finite = np.isfinite(samples.energy)
    assert finite.sum() >= 10
    x = samples.positions[finite][:10]
    np.testing.assert_allclose(samples.energy[finite][:10] * molecule.kT, _energies_kjmol(theirs, x), rtol=1e-5, atol=1e-3)

    # the free energy is the one the weights and states give, and the MD count the frames'
    assert estimate["n_a"] + estimate["n_b"] <= samples.positions.shape[0] and estimate["n_both"] == 0
    assert math.isfinite(estimate["delta_f_kT"]) and estimate["n_a"] > 0 and estimate["n_b"] > 0
    assert math.isfinite(report["md_delta_f"])

    # the checkpoint alone brings the molecule back
    _, stored, temperature, _ = load_checkpoint(report["checkpoint"])
    assert temperature == molecule.temperature and stored.description == molecule.description
    np.testing.assert_allclose(_energies_kjmol(stored.system, x), _energies_kjmol(theirs, x), rtol=1e-9)
