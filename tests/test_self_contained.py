"""A generator trained on the user's own files samples from its checkpoint alone (issue 17)."""

import dataclasses
import shutil

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

import openmm_bg.simulation  # noqa: F401  (imports pymbar, whose banner must not land inside a captured test)
from openmm_bg.cli import main
from openmm_bg.molecules import get_system
from openmm_bg.reference import bundled_path

SETTINGS = "n_iterations: 3\nbatch_size: 8\nkl_batch_size: 4\nw_kl: [[0, 0.0], [1, 0.5]]\nnonfinite: drop\nseed: 2\n"
STATES = ["--state-a", "phi_ALA2 < 0", "--state-b", "phi_ALA2 > 0"]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("OPENMM_BG_DEBUG", raising=False)


def _write_files(folder, system):
    molecule = get_system(system)
    folder.mkdir()
    pdb, xml = folder / "ala2.pdb", folder / "ala2.xml"
    with open(pdb, "w") as handle:
        app.PDBFile.writeFile(molecule.openmm_topology, molecule.positions * unit.nanometer, handle)
    xml.write_text(openmm.XmlSerializer.serialize(molecule.system))
    return pdb, xml


def _free_energy_line(output):
    return [line for line in output.splitlines() if line.startswith(("F_B - F_A", "state A", "state B"))]


@pytest.mark.timeout(600)
def test_checkpoint_alone_samples_as_with_the_files(tmp_path, capsys):
    pdb, xml = _write_files(tmp_path / "files", "ala2-vacuum")
    settings = tmp_path / "settings.yaml"
    settings.write_text(SETTINGS)
    train = ["train", "--structure", str(pdb), "--system-file", str(xml), "--trajectory", str(bundled_path("ala2-vacuum-300K-md.dcd")),
             "--stride", "100", "--config", str(settings), "--blocks", "1", "--hidden", "8", "--output", str(tmp_path / "run"), "--no-progress"]
    assert main(train) == 0
    checkpoint = str(tmp_path / "run" / "generator.pt")
    stored = torch.load(checkpoint, weights_only=True)["metadata"]["molecule"]
    assert stored["name"] == "ala2" and stored["temperature_K"] == 300.0 and "ala2.xml" in stored["description"]
    files = ["--structure", str(pdb), "--system-file", str(xml)]
    sample = ["sample", checkpoint, "-n", "300", "--seed", "3", "--batch-size", "100", "--no-progress"]
    free_energy = ["free-energy", checkpoint, "-n", "300", "--seed", "3", "--batch-size", "100", *STATES, "--no-progress"]
    capsys.readouterr()
    assert main([*sample, "-o", str(tmp_path / "with-files"), *files]) == 0
    assert main([*free_energy, *files]) == 0
    with_files = _free_energy_line(capsys.readouterr().out)

    shutil.rmtree(tmp_path / "files")
    assert main([*sample, "-o", str(tmp_path / "alone")]) == 0
    assert main(free_energy) == 0
    alone = _free_energy_line(capsys.readouterr().out)
    assert alone == with_files and alone
    first, second = np.load(tmp_path / "with-files" / "samples.npz"), np.load(tmp_path / "alone" / "samples.npz")
    assert sorted(first.files) == sorted(second.files)
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)

    # a System that is not the checkpoint's: one line, exit status 2
    other_pdb, other_xml = _write_files(tmp_path / "other", "ala2-implicit")
    for argv, message in (
        ([*sample, "-o", str(tmp_path / "bad"), "--system", "trpzip2-implicit"], "218 particles, expected 22"),
        ([*sample, "-o", str(tmp_path / "bad"), "--structure", str(other_pdb), "--system-file", str(other_xml)], "potential energy at the stored positions"),
        ([*free_energy, "--system", "ala2-implicit"], "does not match the molecule stored in"),
    ):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err


def test_a_registered_name_with_another_system_is_the_stored_molecule():
    """A user molecule named like a registered one (its file stem) comes back as stored, not as the registered one."""
    from openmm_bg.molecules.loading import checkpoint_record, system_from_checkpoint_metadata

    implicit = get_system("ala2-implicit")
    implicit.name = "ala2-vacuum"
    rebuilt = system_from_checkpoint_metadata({"system": "ala2-vacuum", "molecule": checkpoint_record(implicit)})
    assert rebuilt.description == implicit.description and rebuilt.platform == "Reference"
    np.testing.assert_array_equal(rebuilt.positions, implicit.positions)
    same_platform = dataclasses.replace(implicit, platform="Reference")
    np.testing.assert_array_equal(rebuilt.reduced_potential(implicit.positions), same_platform.reduced_potential(implicit.positions))
    assert {"phi_ALA2", "psi_ALA2"} <= set(rebuilt.collective_variables)
    registered = get_system("ala2-vacuum")
    again = system_from_checkpoint_metadata({"system": "ala2-vacuum", "molecule": checkpoint_record(registered)})
    assert again.description == registered.description and set(again.states) == set(registered.states)
    assert system_from_checkpoint_metadata({"system": "ala2"}) is None


def test_a_malformed_stored_molecule_is_one_clear_error():
    from openmm_bg.molecules.loading import system_from_checkpoint_metadata

    with pytest.raises(ValueError, match="a molecule that cannot be read back"):
        system_from_checkpoint_metadata({"molecule": {"name": "x"}}, "gen.pt")
