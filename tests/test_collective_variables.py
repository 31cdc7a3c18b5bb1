"""Named collective variables of any peptide or protein, in state expressions and in openmm-bg free-energy."""

import pickle

import mdtraj as md
import numpy as np
import openmm
import pytest

from openmm_bg.cli import main
from openmm_bg.generator.checkpoints import save_generator
from openmm_bg.generator.recipes import molecular_generator_from_data
from openmm_bg.molecules.collective_variables import native_contact_pairs
from openmm_bg.molecules import get_system, load_bundled_trajectory
from openmm_bg.molecules.named_cvs import describe_collective_variable, standard_collective_variables
from openmm_bg.molecules.states import parse_state
from openmm_bg.sampling.samples import SampleSet, save_samples

CHI = {"chi1": md.compute_chi1, "chi2": md.compute_chi2, "chi3": md.compute_chi3, "chi4": md.compute_chi4}
BACKBONE = {"phi": md.compute_phi, "psi": md.compute_psi}


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("OPENMM_BG_DEBUG", raising=False)


@pytest.fixture(scope="module")
def ala2():
    molecule = get_system("ala2-vacuum")
    return molecule, load_bundled_trajectory("ala2-vacuum", stride=100).astype(np.float64)


@pytest.fixture(scope="module")
def trpzip2():
    molecule = get_system("trpzip2-implicit")
    rng = np.random.default_rng(3)
    frames = molecule.positions[None] + rng.normal(scale=0.03, size=(5, molecule.n_atoms, 3))
    return molecule, np.concatenate([molecule.positions[None], frames])


def _by_residue(topology, finder, positions):
    """mdtraj's angles by residue (the residue of the second atom), as {(resname, resSeq): (n_frames,)}."""
    indices, angles = finder(md.Trajectory(positions, topology))
    return {(topology.atom(int(q[1])).residue.name, topology.atom(int(q[1])).residue.resSeq): angles[:, k] for k, q in enumerate(indices)}


def test_ala2_phi_psi_by_residue_match_mdtraj_and_the_system(ala2):
    molecule, frames = ala2
    cvs = standard_collective_variables(molecule.topology, molecule.positions)
    traj = md.Trajectory(frames, molecule.topology)
    for kind, finder in BACKBONE.items():
        _, expected = finder(traj)
        for name in (kind, f"{kind}_ALA2", f"{kind}_2"):
            np.testing.assert_array_equal(cvs[name](frames), expected[:, 0], err_msg=name)
        np.testing.assert_array_equal(cvs[kind](frames), molecule.collective_variables[kind](frames))
    assert describe_collective_variable(cvs["phi_ALA2"]) == ("dihedral", "4,6,8,14", "radians")
    assert "rmsd_ca" not in cvs and "phi_ACE1" not in cvs  # one C-alpha; the caps have no phi


def test_trpzip2_dihedrals_by_residue_match_mdtraj(trpzip2):
    molecule, frames = trpzip2
    cvs = standard_collective_variables(molecule.topology, molecule.positions)
    n_checked = 0
    for kind, finder in {**BACKBONE, **CHI}.items():
        for (resname, number), expected in _by_residue(molecule.topology, finder, frames).items():
            np.testing.assert_array_equal(cvs[f"{kind}_{resname}{number}"](frames), expected)
            np.testing.assert_array_equal(cvs[f"{kind}_{number}"](frames), expected)
            n_checked += 1
    assert n_checked == 11 + 11 + 11 + 8 + 3 + 2
    assert "phi_TRP2" in cvs and "psi_SER1" in cvs and "phi_SER1" not in cvs and "chi1_GLY7" not in cvs
    assert "phi" not in cvs and "psi" not in cvs  # many residues: no plain names


def test_trpzip2_rg_rmsd_and_native_contacts(trpzip2):
    molecule, frames = trpzip2
    cvs = standard_collective_variables(molecule.topology, molecule.positions)
    np.testing.assert_allclose(cvs["rg"](frames), md.compute_rg(md.Trajectory(frames, molecule.topology)), rtol=1e-6)
    for name in ("rmsd_ca", "q_native"):  # the same as the system's own, built from the same reference
        np.testing.assert_allclose(cvs[name](frames), molecule.collective_variables[name](frames), rtol=1e-12, err_msg=name)
    assert cvs["rmsd_ca"](frames)[0] < 1e-3 and cvs["q_native"](frames)[0] > 0.99
    assert describe_collective_variable(cvs["rg"]) == ("radius of gyration", f"{molecule.n_atoms} atoms", "nm")
    assert describe_collective_variable(cvs["rmsd_ca"]) == ("rmsd", "12 atoms", "nm")
    assert "rmsd_ca" not in standard_collective_variables(molecule.topology)  # no reference, no rmsd
    again = pickle.loads(pickle.dumps(cvs))
    np.testing.assert_array_equal(again["chi2_TRP4"](frames), cvs["chi2_TRP4"](frames))


def test_reference_of_the_wrong_shape_is_refused(trpzip2):
    molecule, _ = trpzip2
    with pytest.raises(ValueError, match=r"reference_positions must have shape \(218, 3\) in nm, got \(10, 3\)"):
        standard_collective_variables(molecule.topology, molecule.positions[:10])


def test_named_cvs_in_state_expressions(trpzip2):
    molecule, frames = trpzip2
    cvs = standard_collective_variables(molecule.topology, molecule.positions)
    state = parse_state("phi_TRP2 < 0 and -pi < psi_2 < 60*deg or rg > 0.7", cvs)
    phi, psi, rg = cvs["phi_TRP2"](frames), cvs["psi_2"](frames), cvs["rg"](frames)
    np.testing.assert_array_equal(state(frames), ((phi < 0) & (-np.pi < psi) & (psi < np.pi / 3)) | (rg > 0.7))
    assert set(state.variables) == {"phi_TRP2", "psi_2", "rg"}


def test_unknown_name_among_many_names_the_nearest(trpzip2):
    molecule, _ = trpzip2
    cvs = standard_collective_variables(molecule.topology, molecule.positions)
    with pytest.raises(ValueError) as error:
        parse_state("phi_TRP3 < 0", cvs, label="state definition for --state-a")
    message = str(error.value)
    assert message.startswith("unknown name 'phi_TRP3' in state definition for --state-a 'phi_TRP3 < 0'")
    assert "phi_TRP2" in message and "phi_TRP4" in message and f"of the {len(cvs)} known" in message
    assert "chi4_LYS12" not in message and "\n" not in message


def _sample_folder(folder, molecule, frames, system):
    n = len(frames)
    samples = SampleSet(
        positions=frames.astype(np.float32), log_weight=np.zeros(n), energy=np.zeros(n), log_prob=np.zeros(n),
        z=np.zeros((n, 3 * molecule.n_atoms)), n_requested=n, n_out_of_domain=0, temperature_K=300.0, system=system,
    )
    save_samples(samples, folder, molecule.topology)
    return folder


@pytest.fixture(scope="module")
def folders(ala2, tmp_path_factory):
    molecule, frames = ala2
    root = tmp_path_factory.mktemp("cvs")
    system_xml = root / "ala2.xml"
    system_xml.write_text(openmm.XmlSerializer.serialize(molecule.system))
    return {
        "ala2": _sample_folder(root / "ala2", molecule, frames, "ala2-vacuum"),
        "mine": _sample_folder(root / "mine", molecule, frames, "my-peptide"),
        "xml": system_xml,
    }


def test_list_cvs_of_a_ready_made_system(folders, capsys):
    assert main(["free-energy", "--list-cvs", str(folders["ala2"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("collective variables of ala2-vacuum: 7")
    assert lines[1].split() == ["name", "kind", "atoms", "unit"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:-1]}
    assert rows["phi"] == rows["phi_ALA2"] == rows["phi_2"] == ["dihedral", "4,6,8,14", "radians"]
    assert rows["psi_ALA2"] == ["dihedral", "6,8,14,16", "radians"]
    assert rows["rg"] == ["radius", "of", "gyration", "22", "atoms", "nm"]
    assert lines[-1] == "built-in states: phi_negative, phi_positive"


def test_list_cvs_of_a_molecule_without_a_system_and_with_extra_cvs(folders, capsys):
    assert main(["free-energy", "--list-cvs", str(folders["mine"]), "--cv", "d=distance:0,5", "--cv", "phi=dihedral:6,8,14,16"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("collective variables of my-peptide: 8")
    assert "phi_ALA2" in out and "d         distance" in out and "built-in states: none" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:-1]}
    assert rows["phi"] == ["dihedral", "6,8,14,16", "radians"]  # a --cv may take a named one's name


def test_user_system_gets_the_named_cvs(folders, capsys):
    """A molecule from --structure/--system-file has no CVs of its own: free-energy uses the named ones."""
    base = ["free-energy", str(folders["mine"]), "--structure", str(folders["mine"] / "samples.pdb"), "--system-file", str(folders["xml"])]
    assert main([*base, "--list-cvs"]) == 0
    out = capsys.readouterr().out
    assert "phi_ALA2" in out and "built-in states: none" in out
    assert main([*base, "--state-a", "phi_ALA2 < -1.5", "--state-b", "phi_2 > -1.5", "--bootstrap", "5"]) == 0
    out = capsys.readouterr().out
    assert "state A               'phi_ALA2 < -1.5': 63 samples" in out and "F_B - F_A" in out


def test_unknown_cv_exits_2_with_one_line(folders, capsys):
    argv = ["free-energy", str(folders["mine"]), "--state-a", "phi_ALA3 < 0", "--state-b", "phi > 0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("openmm-bg free-energy: error: unknown name 'phi_ALA3' in state definition for --state-a")
    assert "phi_ALA2" in err and "--list-cvs" in err and err.count("\n") == 1, err


def test_states_are_required_without_list_cvs(folders, capsys):
    assert main(["free-energy", str(folders["ala2"]), "--state-a", "phi < 0"]) == 2
    err = capsys.readouterr().err
    assert "--state-b is required (or --list-cvs" in err and err.count("\n") == 1, err


def test_native_contact_pairs_among_chosen_atoms(trpzip2):
    molecule, _ = trpzip2
    everything = native_contact_pairs(molecule.topology, molecule.positions)
    protein = [a.index for a in molecule.topology.atoms if a.residue.is_protein]
    np.testing.assert_array_equal(native_contact_pairs(molecule.topology, molecule.positions, atom_indices=protein), everything)
    chosen = np.unique(everything[:5])
    some = native_contact_pairs(molecule.topology, molecule.positions, atom_indices=chosen)
    assert 5 <= len(some) < len(everything) and np.isin(some, chosen).all()
    assert {tuple(p) for p in some} <= {tuple(p) for p in everything}
    assert native_contact_pairs(molecule.topology, molecule.positions, atom_indices=[]).shape == (0, 2)


def test_list_cvs_of_a_checkpoint_draws_nothing(ala2, tmp_path, capsys):
    molecule, frames = ala2
    generator, kwargs = molecular_generator_from_data(molecule.topology, frames[:50], None, n_blocks=1, hidden=[4])
    checkpoint = save_generator(generator, tmp_path / "g.pt", "openmm_bg.generator.recipes.molecular_generator", kwargs, {"system": "ala2-vacuum"})
    assert main(["free-energy", "--list-cvs", str(checkpoint), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("collective variables of ala2-vacuum: 7") and "psi_ALA2" in out and "Kish" not in out
