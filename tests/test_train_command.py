"""openmm-bg train on the bundled alanine dipeptide data, and its errors."""

import json

import numpy as np
import pytest
import torch

from openmm_bg.cli import main
from openmm_bg.generator.checkpoints import load_generator
from openmm_bg.reference import DATA_DIR
from openmm_bg.training.trainer import TrainingConfig

ALA2 = DATA_DIR / "ala2-vacuum-300K-md.dcd"


@pytest.fixture
def settings(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("n_iterations: 6\nbatch_size: 16\nkl_batch_size: 8\nw_kl: [[0, 0.0], [3, 0.5]]\nnonfinite: drop\nseed: 4\n")
    return path


@pytest.mark.timeout(300)
def test_train_writes_a_reloadable_generator_and_its_settings(tmp_path, settings, capsys):
    out = tmp_path / "run"
    status = main(["train", "ala2-vacuum", "--trajectory", str(ALA2), "--stride", "50", "--config", str(settings), "--blocks", "1", "--hidden", "16", "--output", str(out), "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    # 200 frames, the last 10 % (20) held out
    assert "trained 6 iterations on 180 frames" in printed
    assert "(the best held-out loss" in printed and (out / "generator-last.pt").is_file()
    # the settings given, and the run keeps its best generator (held-out frames by default)
    written = TrainingConfig.from_yaml(out / "settings.yaml")
    assert written == TrainingConfig.from_dict({**TrainingConfig.from_yaml(settings).to_dict(), "keep": "best"})
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 6 and "kl" in history[-1] and "kl" not in history[0]
    assert "ml_validation" in history[0] and "ml_validation" in history[-1] and np.isfinite(history[-1]["ml_validation"])
    assert (out / "losses.png").stat().st_size > 5000
    generator = load_generator(out / "generator.pt")
    state = torch.load(out / "generator.pt", weights_only=True)
    held = [row["ml_validation"] for row in history if "ml_validation" in row]
    assert state["metadata"]["kept"].startswith(f"the best held-out loss, {min(held):.4g}")
    assert torch.load(out / "generator-last.pt", weights_only=True)["metadata"]["kept"] == "last"
    # w_kl ramps up from iteration 0, so every later iteration draws kl_batch_size samples
    assert state["metadata"]["n_frames"] == 180 and state["metadata"]["n_validation_frames"] == 20
    assert state["builder_kwargs"]["coupling"] == "spline"
    assert state["metadata"]["energy_evaluations"] == 8 * sum("kl" in row for row in history) == 40
    import mdtraj as md

    x = torch.tensor(md.load(str(ALA2), top=str(DATA_DIR / "ala2-vacuum-300K-md.pdb"))[:3].xyz, dtype=torch.float64)
    assert torch.isfinite(generator.log_prob(x)).all()


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.timeout(300)
def test_same_seed_gives_bit_identical_checkpoints_through_the_command_line(tmp_path):
    """The network's initial weights, the batches and the energy samples all come from the settings' seed."""
    runs = {}
    for name, seed in (("first", 13), ("again", 13), ("other", 14)):
        config = tmp_path / f"{name}.yaml"
        config.write_text(f"n_iterations: 3\nbatch_size: 8\nkl_batch_size: 4\nw_kl: [[0, 0.0], [1, 0.5]]\nnonfinite: drop\nseed: {seed}\n")
        torch.manual_seed(1000 + len(runs))  # a different global state before each run must not matter
        before = torch.random.get_rng_state()
        assert main(["train", "ala2-vacuum", "--trajectory", str(ALA2), "--stride", "100", "--config", str(config), "--blocks", "1",
                     "--hidden", "8", "--output", str(tmp_path / name), "--no-progress"]) == 0
        assert torch.equal(torch.random.get_rng_state(), before), "the run touched torch's global generator"
        runs[name] = _weights(tmp_path / name / "generator.pt")
    first, again, other = runs["first"], runs["again"], runs["other"]
    assert list(first) == list(again) == list(other) and len(first) > 5
    for key in first:
        assert torch.equal(first[key], again[key]), key
    differ = [key for key in first if not torch.equal(first[key], other[key])]
    assert len(differ) >= len(first) // 2, differ


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--trajectory", str(DATA_DIR / "dimer-wca-closed.dcd")], "atoms"),
        (["--trajectory", "missing.dcd"], "trajectory not found"),
        (["--trajectory", str(ALA2), "--validation-fraction", "1.5"], "--validation-fraction must be in"),
    ],
)
def test_bad_input_exits_2(extra, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENMM_BG_DEBUG", raising=False)
    assert main(["train", "ala2-vacuum", *extra, "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_bad_settings_file_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENMM_BG_DEBUG", raising=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 0.1\n")
    assert main(["train", "ala2-vacuum", "--trajectory", str(ALA2), "--config", str(bad)]) == 2
    assert "unknown training settings" in capsys.readouterr().err
    assert main(["train", "no-such-system", "--trajectory", str(ALA2)]) == 2
    assert "no-such-system" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_ala2_implicit_simulate_train_sample(tmp_path, settings, capsys):
    """The chain on ala2-implicit (no bundled data): MD, then training by example and energy, then weighted samples."""
    import numpy as np

    md_out = tmp_path / "implicit.dcd"
    assert main(["simulate", "ala2-implicit", "-o", str(md_out), "--frames", "40", "--steps-per-frame", "25", "--no-progress"]) == 0
    run = tmp_path / "run"
    assert main(["train", "ala2-implicit", "--trajectory", str(md_out), "--config", str(settings), "--blocks", "1", "--hidden", "16",
                 "--output", str(run), "--no-progress"]) == 0
    state = torch.load(run / "generator.pt", weights_only=True)
    assert state["metadata"]["system"] == "ala2-implicit" and state["metadata"]["energy_evaluations"] == 40
    samples = tmp_path / "samples"
    assert main(["sample", str(run / "generator.pt"), "-n", "50", "--output", str(samples), "--no-progress"]) == 0
    arrays = np.load(samples / "samples.npz")
    # the implicit-solvent energy, not the vacuum one: compare with the system's own reduced potential
    from openmm_bg.molecules.systems import get_system

    molecule = get_system("ala2-implicit")
    finite = np.isfinite(arrays["energy"])
    import mdtraj as md

    x = md.load(str(samples / "samples.dcd"), top=str(samples / "samples.pdb")).xyz.astype(np.float64)
    assert finite.any()
    np.testing.assert_allclose(arrays["energy"][finite], molecule.reduced_potential(x)[finite], rtol=1e-3, atol=1e-2)
