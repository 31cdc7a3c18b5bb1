"""openmm-bg sample and openmm-bg free-energy on a tiny alanine-dipeptide generator, and their errors."""

import json
import os
import subprocess
import sys

import mdtraj as md
import numpy as np
import pytest
import torch

import openmm_bg.simulation  # noqa: F401  (imports pymbar, whose banner must not land inside a captured test)
from openmm_bg.generator.recipes import molecular_generator, molecular_generator_from_data
from openmm_bg.cli import main
from openmm_bg.analysis import khat_line, pareto_khat, pareto_khat_threshold, state_free_energy
from openmm_bg.sampling.samples import draw_samples, load_samples, save_samples
from openmm_bg.energies import OpenMMEnergy
from openmm_bg.generator.checkpoints import load_generator, save_generator
from openmm_bg.analysis.reweighting import kish_ess
from openmm_bg.molecules.systems import get_system
from openmm_bg.reference import DATA_DIR

MD_DCD, MD_PDB = DATA_DIR / "ala2-vacuum-300K-md.dcd", DATA_DIR / "ala2-vacuum-300K-md.pdb"
METADATA = {"system": "ala2-vacuum", "temperature_K": 300.0}


def _training_frames():
    return md.load(str(MD_DCD), top=str(MD_PDB))[:200].xyz


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small generator fitted by maximum likelihood to 200 MD frames for a few seconds."""
    folder = tmp_path_factory.mktemp("generator")
    molecule = get_system("ala2-vacuum")
    torch.manual_seed(0)
    generator, kwargs = molecular_generator_from_data(molecule.topology, _training_frames(), None, n_blocks=2, hidden=[16, 16])
    data = torch.as_tensor(_training_frames(), dtype=torch.float64)
    optimizer = torch.optim.Adam(generator.parameters(), lr=3e-3)
    for _ in range(150):
        optimizer.zero_grad()
        loss = -generator.log_prob(data).mean()
        loss.backward()
        optimizer.step()
    save_generator(generator, folder / "nameless.pt", "openmm_bg.generator.recipes.molecular_generator", kwargs, {})
    return save_generator(generator, folder / "generator.pt", "openmm_bg.generator.recipes.molecular_generator", kwargs, METADATA)


@pytest.fixture(scope="module")
def sample_folder(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("samples") / "run"
    assert main(["sample", str(checkpoint), "-n", "1500", "-o", str(out), "--seed", "5", "--batch-size", "400", "--no-progress"]) == 0
    return out


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("OPENMM_BG_DEBUG", raising=False)


def _arrays(folder):
    with np.load(folder / "samples.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def test_sample_writes_the_documented_files(checkpoint, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sample", str(checkpoint), "-n", "700", "-o", str(out), "--seed", "1", "--batch-size", "300", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    a = _arrays(out)
    generator = load_generator(checkpoint)
    n = int(a["n_written"])
    assert int(a["n_requested"]) == 700 and n + int(a["n_out_of_domain"]) == 700 and n > 0
    assert a["log_weight"].shape == a["energy"].shape == a["log_prob"].shape == (n,)
    assert a["z"].shape == (n, generator.dim)
    assert all(a[k].dtype == np.float64 for k in ("log_weight", "energy", "log_prob", "z"))
    assert str(a["system"]) == "ala2-vacuum" and float(a["temperature_K"]) == 300.0
    finite = np.isfinite(a["energy"])
    np.testing.assert_array_equal(a["log_weight"][finite], -a["energy"][finite] - a["log_prob"][finite])
    assert np.all(np.isneginf(a["log_weight"][~finite]))
    traj = md.load(str(out / "samples.dcd"), top=str(out / "samples.pdb"))
    assert traj.n_frames == n and traj.n_atoms == 22
    assert md.load(str(out / "samples.pdb")).n_frames == 1
    np.testing.assert_allclose(md.load(str(out / "samples.pdb")).xyz[0], traj.xyz[0], atol=1e-3)  # PDB keeps 3 decimals in Angstrom
    # the printed ESS is the Kish ESS of all 700 samples drawn
    ess = kish_ess(np.concatenate([a["log_weight"], np.full(700 - n, -np.inf)]))
    assert f"Kish ESS              {100 * ess:.2f} %" in printed
    # and the Pareto k-hat of the same weights, with a warning line when it is above the threshold
    k_hat = pareto_khat(np.concatenate([a["log_weight"], np.full(700 - n, -np.inf)]))
    assert khat_line(k_hat, 700) in printed.splitlines()
    assert ("warning               Pareto k-hat" in printed) == (k_hat > pareto_khat_threshold(700))
    assert f"energy evaluations    {n}" in printed
    assert str(out / "samples.npz") in printed and str(out / "samples.dcd") in printed and str(out / "samples.pdb") in printed


def test_same_seed_same_files_other_seed_other_files(checkpoint, sample_folder, tmp_path, capsys):
    again, other = tmp_path / "again", tmp_path / "other"
    assert main(["sample", str(checkpoint), "-n", "1500", "-o", str(again), "--seed", "5", "--batch-size", "400", "--no-progress"]) == 0
    assert main(["sample", str(checkpoint), "-n", "1500", "-o", str(other), "--seed", "6", "--batch-size", "400", "--no-progress"]) == 0
    first, second, third = _arrays(sample_folder), _arrays(again), _arrays(other)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    assert (sample_folder / "samples.dcd").read_bytes() == (again / "samples.dcd").read_bytes()
    assert not np.array_equal(first["z"][:10], third["z"][:10])


def test_log_weights_recomputed_from_the_written_positions(checkpoint, sample_folder):
    a = _arrays(sample_folder)
    positions = md.load(str(sample_folder / "samples.dcd"), top=str(sample_folder / "samples.pdb")).xyz.astype(np.float64)
    molecule = get_system("ala2-vacuum")
    u = OpenMMEnergy(molecule.system, 300.0, platform="Reference").reduced_energy(positions)
    generator = load_generator(checkpoint)
    with torch.no_grad():
        x = torch.as_tensor(positions)
        log_prob = generator.log_prob(x).numpy()
        z, _ = generator.flow.forward(x)
    finite = np.isfinite(a["energy"])
    assert finite.mean() > 0.9
    # the DCD holds single precision: compare within its rounding
    np.testing.assert_allclose(u[finite], a["energy"][finite], rtol=2e-4, atol=1e-2)
    np.testing.assert_allclose(log_prob, a["log_prob"], rtol=0, atol=5e-3)
    np.testing.assert_allclose(-u[finite] - log_prob[finite], a["log_weight"][finite], rtol=2e-4, atol=2e-2)
    np.testing.assert_allclose(z.numpy(), a["z"], atol=1e-3)


def _independent_delta_f(folder, in_a_of_phi, in_b_of_phi):
    a = _arrays(folder)
    traj = md.load(str(folder / "samples.dcd"), top=str(folder / "samples.pdb"))
    _, phi = md.compute_phi(traj)
    phi = phi[:, 0]
    w = np.exp(a["log_weight"] - a["log_weight"].max())
    in_a, in_b = in_a_of_phi(phi), in_b_of_phi(phi)
    return -np.log(w[in_b].sum() / w[in_a].sum()), in_a, in_b, w


def test_free_energy_on_a_sample_folder_matches_numpy(sample_folder, tmp_path, capsys):
    expected, in_a, in_b, w = _independent_delta_f(sample_folder, lambda phi: phi < 0, lambda phi: phi > 0)
    assert in_b.sum() > 5 and np.isfinite(expected)
    out = tmp_path / "fe.json"
    assert main(["free-energy", str(sample_folder), "--state-a", "phi_negative", "--state-b", "phi_positive", "--bootstrap", "50", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["delta_f_kT"] == pytest.approx(expected, rel=1e-10, abs=1e-10)
    assert record["error_kT"] > 0 and np.isfinite(record["error_kT"])
    assert record["n_a"] == int(in_a.sum()) and record["n_b"] == int(in_b.sum())
    assert record["ess_b"] == pytest.approx(w[in_b].sum() ** 2 / (w[in_b] ** 2).sum(), rel=1e-9)
    kt_kcal = 0.0019872042586408316 * 300.0
    assert record["delta_f_kcal_per_mol"] == pytest.approx(expected * kt_kcal, rel=1e-6)
    reference = json.loads((DATA_DIR / "ala2-vacuum-reference.json").read_text())
    assert record["reference"]["delta_f_kT"] == reference["delta_f_kT"]
    assert record["reference"]["deviation_kT"] == pytest.approx(expected - reference["delta_f_kT"], abs=1e-9)
    assert f"{expected:.3f} +- " in printed and "reference" in printed and "Kish ESS" in printed
    assert "samples read" in printed and "samples written" not in printed  # free-energy writes no samples
    # the diagnostics: k-hat of all weights, effective samples per state, one warning line per reason
    lines = printed.splitlines()
    assert record["k_hat"] == pytest.approx(pareto_khat(_arrays(sample_folder)["log_weight"]), abs=1e-12)
    assert record["ess_a"] == pytest.approx(w[in_a].sum() ** 2 / (w[in_a] ** 2).sum(), rel=1e-9)
    assert sum(line.startswith("Pareto k-hat") for line in lines) == 1
    assert [line[22:] for line in lines if line.startswith("warning")] == record["warnings"]
    assert ("NOT RELIABLE" in printed) == (not record["reliable"]) == bool(record["warnings"])
    # the same states as expressions, and swapped
    assert main(["free-energy", str(sample_folder), "--state-a", "phi > 0", "--state-b", "phi < 0", "--bootstrap", "50", "-o", str(out)]) == 0
    swapped = json.loads(out.read_text())
    assert swapped["delta_f_kT"] == pytest.approx(-expected, abs=1e-9)
    assert swapped["reference"]["delta_f_kT"] == -reference["delta_f_kT"]


def test_free_energy_with_a_user_collective_variable(sample_folder, tmp_path):
    traj = md.load(str(sample_folder / "samples.dcd"), top=str(sample_folder / "samples.pdb"))
    d = md.compute_distances(traj, [[4, 14]])[:, 0]
    cut = float(np.median(d))
    expected, *_ = _independent_delta_f(sample_folder, lambda phi: (phi < 0) & (d < cut), lambda phi: (phi < 0) & ~(d < cut))
    out = tmp_path / "fe.json"
    argv = ["free-energy", str(sample_folder), "--cv", "d=distance:4,14", "--state-a", f"phi < 0 and d < {cut!r}", "--state-b", f"phi < 0 and not d < {cut!r}", "--bootstrap", "20", "-o", str(out)]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["delta_f_kT"] == pytest.approx(expected, abs=1e-9)
    assert record["reference"] is None


def test_free_energy_from_a_checkpoint_samples_as_sample_does(checkpoint, sample_folder, tmp_path):
    out = tmp_path / "fe.json"
    argv = ["free-energy", str(checkpoint), "-n", "1500", "--seed", "5", "--batch-size", "400", "--state-a", "phi < 0", "--state-b", "phi > 0", "--bootstrap", "20", "-o", str(out), "--no-progress"]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    expected, *_ = _independent_delta_f(sample_folder, lambda phi: phi < 0, lambda phi: phi > 0)
    assert record["n_requested"] == 1500 and record["n_written"] == int(_arrays(sample_folder)["n_written"])
    assert record["delta_f_kT"] == pytest.approx(expected, abs=1e-9)


@pytest.fixture(scope="module")
def state_trajectories(tmp_path_factory):
    """Short MD files for each state: frames of the bundled phi < 0 run and of the C7ax run."""
    folder = tmp_path_factory.mktemp("md")
    eq = md.load(str(MD_DCD), top=str(MD_PDB))[:400]
    ax = md.load(str(DATA_DIR / "ala2-vacuum-300K-c7ax.dcd"), top=str(MD_PDB))[:300]
    eq.save_dcd(str(folder / "a.dcd"))
    ax.save_dcd(str(folder / "b.dcd"))
    return folder / "a.dcd", folder / "b.dcd"


def test_free_energy_two_sided_matches_the_python_api(checkpoint, state_trajectories, tmp_path, capsys):
    from openmm_bg.analysis import two_sided_state_free_energy
    from openmm_bg.sampling import load_checkpoint, weigh_configurations

    a_dcd, b_dcd = state_trajectories
    out = tmp_path / "fe.json"
    argv = ["free-energy", str(checkpoint), "-n", "1500", "--seed", "5", "--batch-size", "400", "--state-a", "phi < 0", "--state-b", "phi > 0",
            "--bootstrap", "20", "-o", str(out), "--no-progress", "--md-a", str(a_dcd), "--md-b", str(b_dcd)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "F_B - F_A two-sided" in printed
    record = json.loads(out.read_text())["two_sided"]
    # independently: phi by mdtraj, the generator's samples drawn as sample draws them, log weights of the frames
    generator, molecule, _, _ = load_checkpoint(checkpoint)
    samples = draw_samples(generator, 1500, seed=5, batch_size=400)
    _, phi_gen = md.compute_phi(md.Trajectory(samples.positions, molecule.topology))
    series = []
    for path, inside in ((a_dcd, lambda phi: phi < 0), (b_dcd, lambda phi: phi > 0)):
        traj = md.load(str(path), top=str(MD_PDB))
        keep = inside(md.compute_phi(traj)[1][:, 0])
        series.append(weigh_configurations(generator, traj.xyz[keep].astype(np.float64)))
    expected = two_sided_state_free_energy(samples.log_weight, phi_gen[:, 0] < 0, phi_gen[:, 0] > 0, [series[0]], [series[1]],
                                           n_out_of_domain=samples.n_out_of_domain, n_bootstrap=20, seed=5, warn=False)
    assert record["delta_f_kT"] == pytest.approx(expected["delta_f_kT"], abs=1e-9)
    assert record["samples_a"] == expected["samples_a"] and record["samples_b"] == expected["samples_b"]


def test_weigh_configurations_gives_the_weights_sample_draws(checkpoint):
    from openmm_bg.sampling import load_checkpoint, weigh_configurations

    generator, _, _, _ = load_checkpoint(checkpoint)
    samples = draw_samples(generator, 300, seed=2, batch_size=300)
    np.testing.assert_allclose(weigh_configurations(generator, samples.positions, batch_size=70), samples.log_weight, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        weigh_configurations(generator, np.full((2, 22, 3), np.nan))


def test_two_sided_bad_input_exits_2(checkpoint, sample_folder, state_trajectories, capsys):
    a_dcd, b_dcd = state_trajectories
    base = ["free-energy", str(checkpoint), "-n", "300", "--state-a", "phi < 0", "--state-b", "phi > 0", "--no-progress"]
    cases = [
        (base + ["--md-a", str(a_dcd)], "give --md-a and --md-b"),
        (["free-energy", str(sample_folder), "--state-a", "phi < 0", "--state-b", "phi > 0", "--md-a", str(a_dcd), "--md-b", str(b_dcd)], "need the generator"),
        (base + ["--md-a", str(a_dcd), "--md-b", str(a_dcd.parent / "none.dcd")], "trajectory"),
        (base + ["--md-a", str(a_dcd), "--md-b", str(DATA_DIR / "particle-dimer-closed.dcd")], "with 38 atoms vs topology with 22 atoms"),
        (["free-energy", str(checkpoint), "-n", "300", "--state-a", "phi < 0", "--state-b", "phi > 3", "--md-a", str(a_dcd), "--md-b", str(a_dcd), "--no-progress"], "no frame of --md-b"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1, err


def test_out_of_domain_and_failed_samples(tmp_path):
    """Out-of-domain samples are counted, not written; failed energies are written as inf / -inf."""
    molecule = get_system("ala2-vacuum")
    openmm_energy = OpenMMEnergy(molecule.system, 300.0, platform="Reference")

    def energy(x):  # fails where atom 0 has a positive x coordinate
        u = openmm_energy(x)
        return torch.where(x[:, 0, 0] > x[:, 0, 0].median(), torch.full_like(u, float("inf")), u)

    # a wide prior puts many latent points outside the internal-coordinate domain
    fitted, kwargs = molecular_generator_from_data(molecule.topology, _training_frames(), None, n_blocks=1, hidden=[8], sigma=10.0)
    generator = molecular_generator(energy, **kwargs)
    generator.load_state_dict(fitted.state_dict())
    samples = draw_samples(generator, 600, seed=3, batch_size=250, system="ala2-vacuum", temperature_K=300.0)
    assert samples.n_out_of_domain > 0 and samples.n_written > 0
    assert samples.n_written + samples.n_out_of_domain == 600
    assert np.isfinite(samples.positions).all()
    failed = ~np.isfinite(samples.energy)
    assert failed.any() and not failed.all()
    assert np.all(np.isposinf(samples.energy[failed])) and np.all(np.isneginf(samples.log_weight[failed]))
    assert samples.energy_evaluations == samples.n_written
    save_samples(samples, tmp_path / "s", molecule.topology)
    back, _ = load_samples(tmp_path / "s")
    assert back.n_out_of_domain == samples.n_out_of_domain and back.n_written == samples.n_written
    np.testing.assert_array_equal(back.energy, samples.energy)
    np.testing.assert_allclose(back.positions, samples.positions, atol=1e-5)
    # zero-weight samples left out change no self-normalised estimate, only the ESS fraction
    # states: the heaviest sample against the rest (with sigma = 10 the weights span
    # thousands of kT, so a larger B can leave A with weights that underflow)
    in_b = np.zeros(samples.n_written, dtype=bool)
    in_b[np.argsort(samples.log_weight)[-1:]] = True
    result = state_free_energy(samples.log_weight, ~in_b, in_b, n_out_of_domain=samples.n_out_of_domain, n_bootstrap=10, warn=False)
    assert not result["reliable"] and any(message.startswith("state B has 1.0 effective samples") for message in result["warnings"])
    w = np.exp(samples.log_weight - samples.log_weight[~failed].max())
    assert result["delta_f_kT"] == pytest.approx(-np.log(w[in_b].sum() / w[~in_b].sum()), abs=1e-9)
    assert result["kish_ess"] == pytest.approx(kish_ess(samples.log_weight) * samples.n_written / 600, rel=1e-9)


# --- bad input: one line on stderr, exit status 2 ----------------------------------------------------


@pytest.fixture(scope="module")
def bad_inputs(checkpoint, sample_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "random.pt").write_bytes(np.random.default_rng(0).bytes(4000))
    data = checkpoint.read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    mismatched = folder / "mismatched"
    mismatched.mkdir()
    for name in ("samples.dcd", "samples.pdb"):
        (mismatched / name).write_bytes((sample_folder / name).read_bytes())
    arrays = _arrays(sample_folder)
    keep = int(arrays["n_written"]) - 7
    arrays.update({k: arrays[k][:keep] for k in ("log_weight", "energy", "log_prob", "z")}, n_written=np.int64(keep))
    np.savez(mismatched / "samples.npz", **arrays)
    return folder


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sample", "{bad}/missing.pt", "-n", "10"], "generator checkpoint not found"),
        (["sample", "{bad}/random.pt", "-n", "10"], "random.pt: it is not a valid openmm_bg generator checkpoint"),
        (["sample", "{bad}/truncated.pt", "-n", "10"], "truncated.pt: it is not a valid openmm_bg generator checkpoint"),
        (["sample", "{checkpoint}", "-n", "10", "--system", "no-such-system"], "unknown system 'no-such-system'"),
        (["sample", "{nameless}", "-n", "10"], "pass --system NAME"),
        (["sample", "{checkpoint}", "-n", "10", "--system", "dimer-wca"], "dimer-wca has 216 atoms"),
        (["sample", "{checkpoint}", "-n", "0"], "must be positive"),
        (["free-energy", "{bad}/no-folder", "--state-a", "phi < 0", "--state-b", "phi > 0"], "no-folder not found"),
        (["free-energy", "{bad}", "--state-a", "phi < 0", "--state-b", "phi > 0"], "samples.dcd not found in"),
        (["free-energy", "{bad}/random.pt", "--state-a", "phi < 0", "--state-b", "phi > 0"], "not a valid openmm_bg generator checkpoint"),
        (["free-energy", "{samples}", "--state-a", "", "--state-b", "phi > 0"], "state definition for --state-a is empty; give a built-in state (phi_negative, phi_positive) or an expression such as 'phi > 0'"),
        (["free-energy", "{samples}", "--state-a", "phi < 0", "--state-b", "chi > 0"], "unknown name 'chi' in state definition for --state-b"),
        (["free-energy", "{samples}", "--state-a", "phi < 0", "--state-b", "phi.real > 0"], "attribute access is not allowed"),
        (["free-energy", "{samples}", "--state-a", "phi < 0", "--state-b", "phi > 4"], "contains no sample with a finite weight"),
        (["free-energy", "{samples}", "--state-a", "phi < 0", "--state-b", "x > 0", "--cv", "x=distance:0,99"], "must lie in [0, 22)"),
        (["free-energy", "{samples}", "--state-a", "phi < 0", "--state-b", "phi > 0", "--system", "no-such-system"], "unknown system 'no-such-system'"),
        (["free-energy", "{bad}/mismatched", "--state-a", "phi < 0", "--state-b", "phi > 0"], "do not belong together"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, checkpoint, sample_folder, bad_inputs, capsys):
    names = {"bad": bad_inputs, "checkpoint": checkpoint, "nameless": checkpoint.parent / "nameless.pt", "samples": sample_folder}
    argv = [arg.format(**names) for arg in argv] + ["--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"openmm-bg {argv[0]}: error:"), err
    assert message in err, err
    assert "Traceback" not in err and err.count("\n") == 1, err


def test_corrupt_checkpoint_in_a_real_process(bad_inputs):
    env = {k: v for k, v in os.environ.items() if k != "OPENMM_BG_DEBUG"}
    done = subprocess.run(
        [sys.executable, "-m", "openmm_bg.cli", "sample", str(bad_inputs / "truncated.pt"), "-n", "5"],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "openmm-bg sample: error:" in done.stderr and "not a valid openmm_bg generator checkpoint" in done.stderr
