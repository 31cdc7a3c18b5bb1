"""The user's own molecule: each input format builds the Hamiltonian OpenMM builds from the same files and options.

Every reference here is a direct OpenMM build (``AmberPrmtopFile``, ``GromacsTopFile``,
``ForceField``, ``XmlSerializer``) or openmmtools' ``AlanineDipeptideImplicit``; energies
are compared on the Reference platform at the same positions.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import warnings
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest

from openmm_bg.cli import main
from openmm_bg.molecules import load_system
from openmm_bg.molecules.systems import TRPZIP2_PDB

FIXTURES = Path(__file__).parent / "fixtures" / "user_molecule"
GRO, TOP = FIXTURES / "methanol.gro", FIXTURES / "methanol.top"


def _openmmtools_data(folder: str) -> Path:
    import openmmtools

    return Path(os.path.dirname(openmmtools.__file__)) / "data" / folder


GBSA = _openmmtools_data("alanine-dipeptide-gbsa")
PRMTOP, CRD = GBSA / "alanine-dipeptide.prmtop", GBSA / "alanine-dipeptide.crd"


def _energy(system: openmm.System, positions: np.ndarray, box: np.ndarray | None = None) -> float:
    """Potential energy on the Reference platform, kJ/mol; positions (n_atoms, 3) nm."""
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    if box is not None:
        context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def _frames(positions: np.ndarray, n: int = 3, scale: float = 0.005) -> list[np.ndarray]:
    """The positions and ``n - 1`` jiggled copies (fixed seed), nm: energies are compared away from the start too."""
    rng = np.random.default_rng(17)
    return [positions] + [positions + rng.normal(scale=scale, size=positions.shape) for _ in range(n - 1)]


def _assert_same_energies(mol, reference: openmm.System, rtol: float = 1e-9) -> None:
    assert mol.system.getNumParticles() == reference.getNumParticles()
    assert mol.system.getNumConstraints() == reference.getNumConstraints()
    for x in _frames(mol.positions):
        np.testing.assert_allclose(_energy(mol.system, x, mol.box_vectors), _energy(reference, x, mol.box_vectors), rtol=rtol)


def _no_warnings(build):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        return build()


@pytest.mark.parametrize(
    "options, direct",
    [
        ({"implicit_solvent": "none"}, {"implicitSolvent": None, "constraints": None}),
        ({"implicit_solvent": "OBC2", "constraints": "HBonds"}, {"implicitSolvent": app.OBC2, "constraints": app.HBonds}),
        ({"implicit_solvent": "gbn2", "nonbonded_cutoff": 0.9, "hydrogen_mass": 3.0},
         {"implicitSolvent": app.GBn2, "nonbondedMethod": app.CutoffNonPeriodic, "nonbondedCutoff": 0.9 * unit.nanometer,
          "constraints": None, "hydrogenMass": 3.0 * unit.dalton}),
    ],
)
def test_amber_prmtop_matches_a_direct_build(options, direct):
    mol = _no_warnings(lambda: load_system(CRD, PRMTOP, **options))
    reference = app.AmberPrmtopFile(str(PRMTOP)).createSystem(**direct)
    _assert_same_energies(mol, reference)
    masses = [s.getParticleMass(i).value_in_unit(unit.dalton) for s in (mol.system, reference) for i in range(22)]
    np.testing.assert_array_equal(masses[:22], masses[22:])
    assert mol.description.startswith("Amber prmtop alanine-dipeptide.prmtop with alanine-dipeptide.crd;")
    assert mol.description.endswith("; 22 particles")


def test_amber_prmtop_with_a_pdb_structure(tmp_path):
    prmtop = app.AmberPrmtopFile(str(PRMTOP))
    pdb = tmp_path / "ala2.pdb"
    with open(pdb, "w") as handle:
        app.PDBFile.writeFile(prmtop.topology, app.AmberInpcrdFile(str(CRD)).getPositions(), handle)
    mol = load_system(pdb, PRMTOP, implicit_solvent="OBC1")
    _assert_same_energies(mol, prmtop.createSystem(implicitSolvent=app.OBC1, constraints=None))


def test_obc1_reproduces_openmmtools_alanine_dipeptide_implicit():
    from openmmtools.testsystems import AlanineDipeptideImplicit

    theirs = AlanineDipeptideImplicit(constraints=None)
    mol = load_system(CRD, PRMTOP, implicit_solvent="OBC1")
    np.testing.assert_allclose(mol.positions, theirs.positions.value_in_unit(unit.nanometer), rtol=0, atol=1e-12)
    assert "implicit solvent OBC1" in mol.description and "constraints none, 0 in the System" in mol.description
    for x in _frames(mol.positions):
        np.testing.assert_allclose(_energy(mol.system, x), _energy(theirs.system, x), rtol=1e-6)


def test_prmtop_made_for_implicit_solvent_warns_without_a_choice():
    with pytest.warns(UserWarning, match=r"made for implicit solvent \(GB radius set mbondi2, for OBC1 or OBC2\).*built in vacuum"):
        mol = load_system(CRD, PRMTOP)
    assert "; vacuum;" in mol.description
    _no_warnings(lambda: load_system(CRD, PRMTOP, implicit_solvent="none"))
    # periodic (explicit solvent), although the radius set is mbondi2: no warning; PME with a 1 nm cutoff
    cb7 = _openmmtools_data("cb7-b2")
    mol = _no_warnings(lambda: load_system(cb7 / "complex-explicit.inpcrd", cb7 / "complex-explicit.prmtop"))
    assert mol.box_vectors is not None and "; periodic box (explicit solvent or crystal);" in mol.description
    assert "nonbonded PME, cutoff 1 nm" in mol.description
    # tleap's default radius set (mbondi) chooses no model: no warning
    benzene = _openmmtools_data("benzene-toluene-implicit")
    mol = _no_warnings(lambda: load_system(benzene / "solvent.inpcrd", benzene / "solvent.prmtop"))
    assert mol.box_vectors is None and "; vacuum;" in mol.description


def test_periodic_box_comes_from_the_coordinates(tmp_path):
    cb7 = _openmmtools_data("cb7-b2")
    lines = (cb7 / "complex-explicit.inpcrd").read_text().splitlines()
    lines[-1] = "".join(f"{value:12.7f}" for value in (40.5, 41.0, 41.5, 90.0, 90.0, 90.0))  # e.g. after NPT
    inpcrd = tmp_path / "npt.inpcrd"
    inpcrd.write_text("\n".join(lines) + "\n")
    mol = load_system(inpcrd, cb7 / "complex-explicit.prmtop", nonbonded_cutoff=0.9)
    np.testing.assert_allclose(mol.box_vectors, np.diag([4.05, 4.10, 4.15]), atol=1e-12)
    box = mol.system.getDefaultPeriodicBoxVectors()
    np.testing.assert_allclose([box[i][i].value_in_unit(unit.nanometer) for i in range(3)], [4.05, 4.10, 4.15], atol=1e-12)
    assert "nonbonded PME, cutoff 0.9 nm" in mol.description


def test_gromacs_top_and_gro_match_a_direct_build():
    gro = app.GromacsGroFile(str(GRO))
    top = app.GromacsTopFile(str(TOP), periodicBoxVectors=gro.getPeriodicBoxVectors())
    mol = load_system(GRO, TOP)
    _assert_same_energies(mol, top.createSystem(nonbondedMethod=app.PME))
    assert mol.description.startswith("GROMACS topology methanol.top with methanol.gro;")
    mol = load_system(GRO, TOP, constraints="HBonds", nonbonded_cutoff=0.9)
    reference = top.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    _assert_same_energies(mol, reference)
    assert reference.getNumConstraints() == 4
    with pytest.raises(ValueError, match="GROMACS topologies without implicit solvent; got implicit solvent OBC1"):
        load_system(GRO, TOP, implicit_solvent="OBC1")


def test_pdb_and_forcefield_files_match_a_direct_build():
    pdb = app.PDBFile(str(TRPZIP2_PDB))
    mol = load_system(TRPZIP2_PDB, forcefield=["amber14-all.xml"], implicit_solvent="GBn2", constraints="HBonds")
    reference = app.ForceField("amber14-all.xml", "implicit/gbn2.xml").createSystem(pdb.topology, constraints=app.HBonds)
    _assert_same_energies(mol, reference)
    assert mol.description.startswith("OpenMM force field amber14-all.xml + implicit/gbn2.xml with trpzip2-implicit.pdb; implicit solvent GBn2;")
    same = load_system(TRPZIP2_PDB, forcefield=["amber14-all.xml", "implicit/gbn2.xml"], constraints="HBonds")
    assert "implicit solvent implicit/gbn2.xml" in same.description
    with pytest.raises(ValueError, match=r"already choose the implicit solvent \(implicit/gbn2.xml\)"):
        load_system(TRPZIP2_PDB, forcefield=["amber14-all.xml", "implicit/gbn2.xml"], implicit_solvent="OBC2")


def test_the_pdb_placeholder_box_is_no_box_and_implicit_solvent_refuses_a_real_one(tmp_path):
    """NMR entries and models carry CRYST1 1.000 1.000 1.000 (the PDB format's placeholder): the
    structure is not periodic, so implicit solvent builds; a real box with implicit solvent is
    one clear error, not OpenMM's "Illegal nonbonded method"."""
    lines = open(TRPZIP2_PDB).read().splitlines()
    placeholder, boxed = tmp_path / "placeholder.pdb", tmp_path / "boxed.pdb"
    placeholder.write_text("\n".join(["CRYST1    1.000    1.000    1.000  90.00  90.00  90.00 P 1           1", *lines]) + "\n")
    boxed.write_text("\n".join(["CRYST1   50.000   50.000   50.000  90.00  90.00  90.00 P 1           1", *lines]) + "\n")
    mol = load_system(placeholder, forcefield=["amber14-all.xml", "implicit/gbn2.xml"], platform="Reference")
    assert mol.box_vectors is None and not mol.system.usesPeriodicBoundaryConditions()
    with pytest.raises(ValueError, match=r"implicit solvent \(implicit/gbn2.xml\) needs a structure without a periodic box"):
        load_system(boxed, forcefield=["amber14-all.xml", "implicit/gbn2.xml"], platform="Reference")
    assert load_system(boxed, forcefield=["amber14-all.xml"], platform="Reference").box_vectors is not None


def test_serialized_system_matches_and_takes_no_build_options(tmp_path):
    prmtop = app.AmberPrmtopFile(str(PRMTOP))
    built = prmtop.createSystem(implicitSolvent=app.OBC1, constraints=app.HBonds)
    xml, pdb = tmp_path / "ala2.xml", tmp_path / "ala2.pdb"
    xml.write_text(openmm.XmlSerializer.serialize(built))
    with open(pdb, "w") as handle:
        app.PDBFile.writeFile(prmtop.topology, app.AmberInpcrdFile(str(CRD)).getPositions(), handle)
    mol = load_system(pdb, xml)
    _assert_same_energies(mol, built)
    assert mol.description.startswith("serialized System ala2.xml with ala2.pdb; implicit solvent (CustomGBForce in the System);")
    assert "constraints 12 in the System" in mol.description
    with pytest.raises(ValueError, match="already built; implicit_solvent, hydrogen_mass apply only"):
        load_system(pdb, xml, implicit_solvent="OBC1", hydrogen_mass=3.0)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"implicit_solvent": "XYZ"}, "unknown implicit solvent 'XYZ'; choose one of none, OBC1, OBC2, GBn, GBn2, HCT"),
        ({"constraints": "Bonds"}, "unknown constraints 'Bonds'; choose one of none, HBonds, AllBonds, HAngles"),
        ({"nonbonded_cutoff": -1.0}, "nonbonded_cutoff must be a finite positive number of nm, got -1.0"),
        ({"hydrogen_mass": 0}, "hydrogen_mass must be a finite positive number of Da, got 0"),
    ],
)
def test_bad_options_name_what_is_valid(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_system(CRD, PRMTOP, **options)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--implicit-solvent", "XYZ"], "unknown implicit solvent 'XYZ'; choose one of none, OBC1"),
        (["--constraints", "some"], "unknown constraints 'some'; choose one of none, HBonds, AllBonds, HAngles"),
    ],
)
@pytest.mark.parametrize("command", ["simulate", "train"])
def test_bad_names_on_the_command_line_end_in_one_line(command, extra, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENMM_BG_DEBUG", raising=False)
    output = ["-o", str(tmp_path / "out.dcd")] if command == "simulate" else ["--trajectory", str(tmp_path / "none.dcd")]
    assert main([command, "--structure", str(CRD), "--system-file", str(PRMTOP), *extra, *output]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"openmm-bg {command}: error: ") and message in err


def test_build_options_need_your_own_files(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENMM_BG_DEBUG", raising=False)
    assert main(["simulate", "ala2-vacuum", "--implicit-solvent", "OBC1", "-o", str(tmp_path / "out.dcd")]) == 2
    assert "implicit_solvent apply to your own files: give --structure too" in capsys.readouterr().err


def test_simulate_prints_the_warning_and_the_hamiltonian_in_one_line_each(tmp_path, capsys):
    out = tmp_path / "ala2.dcd"
    argv = ["simulate", "--structure", str(CRD), "--system-file", str(PRMTOP), "-o", str(out), "--frames", "1",
            "--steps-per-frame", "2", "--no-progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    warning_lines = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warning_lines) == 1 and warning_lines[0].startswith("openmm-bg simulate: warning: alanine-dipeptide.prmtop was made for implicit solvent")
    assert "Hamiltonian: Amber prmtop alanine-dipeptide.prmtop with alanine-dipeptide.crd; vacuum;" in captured.out
    assert main([*argv[:-1], "--implicit-solvent", "OBC1", "--constraints", "HBonds", "--no-progress", "-o", str(tmp_path / "obc.dcd")]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert "Hamiltonian: Amber prmtop alanine-dipeptide.prmtop with alanine-dipeptide.crd; implicit solvent OBC1; constraints HBonds, 12 in the System;" in captured.out


def test_reading_a_dcd_prints_nothing():
    """mdtraj's DCD plugin prints from C on every read; the loader sends those lines nowhere."""
    import subprocess
    import sys

    code = "from openmm_bg.molecules import load_bundled_trajectory; print(load_bundled_trajectory('ala2-vacuum', stride=500).shape)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "dcdplugin" not in run.stdout + run.stderr
    assert run.stdout.strip().endswith("(20, 22, 3)")


# --- CHARMM: a PSF with its parameter files -------------------------------------------------

CHARMM = Path(__file__).parent / "fixtures" / "charmm"
PSF, PRM, CHARMM_CRD = CHARMM / "nma.psf", CHARMM / "nma.prm", CHARMM / "nma.crd"


def _charmm_direct(box=None, **options) -> openmm.System:
    """The System OpenMM builds from the fixture's PSF and parameter file with ``options``."""
    psf = app.CharmmPsfFile(str(PSF), periodicBoxVectors=box)
    return psf.createSystem(app.CharmmParameterSet(str(PRM)), **options)


@pytest.mark.parametrize(
    "options, direct",
    [
        ({}, {}),
        ({"implicit_solvent": "OBC2", "constraints": "HBonds", "hydrogen_mass": 3.0},
         {"implicitSolvent": app.OBC2, "constraints": app.HBonds, "hydrogenMass": 3.0 * unit.dalton}),
        ({"implicit_solvent": "GBn2", "nonbonded_cutoff": 0.8},
         {"implicitSolvent": app.GBn2, "nonbondedMethod": app.CutoffNonPeriodic, "nonbondedCutoff": 0.8 * unit.nanometer}),
    ],
)
def test_charmm_psf_matches_a_direct_build(options, direct):
    mol = _no_warnings(lambda: load_system(CHARMM_CRD, PSF, forcefield=[PRM], **options))
    reference = _charmm_direct(**direct)
    _assert_same_energies(mol, reference)
    masses = [s.getParticleMass(i).value_in_unit(unit.dalton) for s in (mol.system, reference) for i in range(12)]
    np.testing.assert_array_equal(masses[:12], masses[12:])
    np.testing.assert_allclose(mol.positions, app.CharmmCrdFile(str(CHARMM_CRD)).positions.value_in_unit(unit.nanometer), rtol=0, atol=1e-12)
    assert mol.description.startswith("CHARMM PSF nma.psf + nma.prm with nma.crd;")
    solvent = options.get("implicit_solvent")
    assert (f"; implicit solvent {solvent};" if solvent else "; vacuum;") in mol.description
    assert [atom.element.symbol for atom in mol.topology.atoms] == ["C", "H", "H", "H", "C", "O", "N", "H", "C", "H", "H", "H"]


def test_charmm_psf_with_a_pdb_takes_its_box(tmp_path):
    crd = app.CharmmCrdFile(str(CHARMM_CRD))
    topology = app.CharmmPsfFile(str(PSF)).topology
    box = [openmm.Vec3(3.0, 0, 0), openmm.Vec3(0, 3.1, 0), openmm.Vec3(0, 0, 3.2)] * unit.nanometer
    topology.setPeriodicBoxVectors(box)
    pdb = tmp_path / "nma-box.pdb"
    with open(pdb, "w") as handle:
        app.PDBFile.writeFile(topology, crd.positions, handle)
    mol = load_system(pdb, PSF, forcefield=[PRM], nonbonded_cutoff=0.9)
    np.testing.assert_allclose(mol.box_vectors, np.diag([3.0, 3.1, 3.2]), atol=1e-12)
    assert "nonbonded PME, cutoff 0.9 nm" in mol.description and "; periodic box" in mol.description
    _assert_same_energies(mol, _charmm_direct(box, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer), rtol=1e-6)


@pytest.mark.parametrize(
    "structure, system, forcefield, error, message",
    [
        (CHARMM_CRD, PSF, None, ValueError, "a CHARMM PSF (nma.psf) needs its parameter files: give forcefield (--forcefield)"),
        (CHARMM_CRD, PSF, ["amber14-all.xml"], ValueError, "with a CHARMM PSF, forcefield names CHARMM parameter files (.prm, .par, .rtf, .top, .str, .inp); got amber14-all.xml"),
        (CHARMM_CRD, PSF, [CHARMM / "none.prm"], FileNotFoundError, "CHARMM parameter file not found"),
        (GRO, PSF, [PRM], ValueError, "with a CHARMM PSF, structure must be a CHARMM .crd, a PDB or a PDBx/mmCIF file, got methanol.gro"),
        (TRPZIP2_PDB, None, [PRM], ValueError, "CHARMM parameter files"),
        (CRD, PRMTOP, [PRM], ValueError, "alanine-dipeptide.prmtop brings its own parameters: drop forcefield"),
        (TRPZIP2_PDB, PSF, [PRM], ValueError, "trpzip2-implicit.pdb has 218 positions but the System has 12 particles"),
        (CRD, PSF, [PRM], ValueError, "alanine-dipeptide.crd: CharmmFileError: Error parsing CHARMM coordinate file"),
    ],
)
def test_charmm_bad_combinations_name_what_is_missing(structure, system, forcefield, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_system(structure, system, forcefield=forcefield, implicit_solvent="none")


def test_charmm_missing_parameter_is_one_value_error(tmp_path):
    lines = PRM.read_text().splitlines()
    (tmp_path / "no-amide-bond.prm").write_text("\n".join(line for line in lines if not line.startswith("CC   NA")) + "\n")
    with pytest.raises(ValueError, match=r"nma\.psf, no-amide-bond\.prm: MissingParameter: Missing bond type"):
        load_system(CHARMM_CRD, PSF, forcefield=[tmp_path / "no-amide-bond.prm"])
    bad_psf = tmp_path / "bad.psf"
    bad_psf.write_text(PSF.read_text().replace("PSF CMAP", "NOT A PSF"))
    with pytest.raises(ValueError, match=r"bad\.psf: CharmmPSFError: Unrecognized PSF file"):
        load_system(CHARMM_CRD, bad_psf, forcefield=[PRM])


def test_simulate_a_charmm_psf(tmp_path, capsys, monkeypatch):
    import mdtraj as md

    monkeypatch.delenv("OPENMM_BG_DEBUG", raising=False)
    out = tmp_path / "nma.dcd"
    files = ["--structure", str(CHARMM_CRD), "--system-file", str(PSF)]
    argv = ["simulate", *files, "--forcefield", str(PRM), "--implicit-solvent", "OBC1", "-o", str(out), "--frames", "2",
            "--steps-per-frame", "5", "--no-progress"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "Hamiltonian: CHARMM PSF nma.psf + nma.prm with nma.crd; implicit solvent OBC1;" in lines[0]
    assert lines[1].startswith("OpenMM platform ") and "the fastest in a timing of energy and forces" in lines[1]
    assert md.load(str(out), top=str(out.with_suffix(".pdb"))).xyz.shape == (2, 12, 3)
    # the platform given by name is taken as given: no timing
    assert main([*argv[:-5], "-o", str(tmp_path / "ref.dcd"), "--frames", "1", "--steps-per-frame", "1", "--platform", "Reference", "--no-progress"]) == 0
    assert "OpenMM platform Reference: chosen by name" in capsys.readouterr().out
    assert main(["simulate", *files, "-o", str(tmp_path / "x.dcd")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs its parameter files: give forcefield (--forcefield)" in err


# --- one meaning per option name across commands ---------------------------------------------


@pytest.mark.parametrize("command", ["simulate", "train"])
def test_system_option_names_a_registered_system_as_the_positional_does(command, tmp_path, capsys, monkeypatch):
    from openmm_bg.cli import parse_args

    rest = ["-o", str(tmp_path / "x.dcd")] if command == "simulate" else ["--trajectory", str(tmp_path / "none.dcd")]
    assert parse_args([command, "--system", "ala2-vacuum", *rest]).system_option == "ala2-vacuum"
    monkeypatch.delenv("OPENMM_BG_DEBUG", raising=False)
    assert main([command, "ala2-vacuum", "--system", "ala2-implicit", *rest]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SYSTEM 'ala2-vacuum' and --system 'ala2-implicit' differ" in err
    assert main([command, "--system", "ala2-vacuum", "--structure", str(CRD), *rest]) == 2
    assert "give either a ready-made SYSTEM or --structure, not both (got 'ala2-vacuum' and " in capsys.readouterr().err


def test_simulate_takes_the_registered_system_by_option(tmp_path, capsys):
    out = tmp_path / "ala2.dcd"
    assert main(["simulate", "--system", "ala2-vacuum", "-o", str(out), "--frames", "1", "--steps-per-frame", "2", "--no-progress"]) == 0
    assert out.is_file() and "Hamiltonian" not in capsys.readouterr().out  # a registered system is described by its name


@pytest.mark.parametrize("command", ["simulate", "train"])
def test_help_shows_every_default(command, capsys):
    """Each option with a default (not None, not a flag) says it in --help, and --platform says what auto does."""
    from openmm_bg.cli import parse_args

    with pytest.raises(SystemExit):
        parse_args([command, "--help"])
    text = capsys.readouterr().out
    blocks = re.split(r"\n  (?=-)", text.split("options:", 1)[1])
    parser = argparse.ArgumentParser()
    importlib.import_module(f"openmm_bg.commands.{command}").configure(parser)
    with_default = [a for a in parser._actions if a.option_strings and a.default not in (None, False, argparse.SUPPRESS) and a.default != []]
    assert with_default
    for action in with_default:
        block = " ".join(next(b for b in blocks if b.startswith(action.option_strings[0] + " ") or b.startswith(", ".join(action.option_strings))).split())
        assert "default" in block, block
    if command == "simulate":
        assert "or auto (the default): for your own files, the fastest of the installed platforms in a timing" in " ".join(text.split())
