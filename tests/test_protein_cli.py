"""The command-line chain on a protein: simulate, train at a chosen temperature, free energy of states over Q and RMSD."""

import json

import pytest

import openmm_bg.simulation  # noqa: F401  (imports pymbar, whose banner must not land inside a captured test)
from openmm_bg.cli import main

SETTINGS = "n_iterations: 20\nbatch_size: 64\nseed: 1\n"
T = 349.7


@pytest.mark.timeout(300)
def test_go_model_folding_free_energy_from_the_command_line(tmp_path, capsys):
    """trpzip2-go at its melting point: MD, a small generator trained for 349.7 K (recorded in
    the checkpoint, so sampling happens there), then F(unfolded) - F(folded) by the system's
    states and by expressions over the native-contact fraction and the C-alpha RMSD, with
    the per-state sample counts and ESS and the k-hat diagnostic.  The numbers are not
    checked for accuracy here (20 training iterations); benchmarks/results/go-model-generator
    holds the checked ones."""
    md = tmp_path / "md.dcd"
    assert main(["simulate", "trpzip2-go", "-o", str(md), "--frames", "300", "--steps-per-frame", "100", "--timestep", "0.01",
                 "--temperature", str(T), "--seed", "1"]) == 0
    settings = tmp_path / "settings.yaml"
    settings.write_text(SETTINGS)
    run = tmp_path / "run"
    assert main(["train", "trpzip2-go", "--temperature", str(T), "--trajectory", str(md), "--config", str(settings),
                 "--blocks", "1", "--hidden", "16", "-o", str(run), "--no-progress"]) == 0
    checkpoint = str(run / "generator.pt")
    capsys.readouterr()
    assert main(["free-energy", checkpoint, "--list-cvs"]) == 0
    listed = capsys.readouterr().out
    assert "q_native" in listed and "rmsd_ca" in listed

    common = [checkpoint, "-n", "2000", "--seed", "2", "--batch-size", "500", "--bootstrap", "50", "--no-progress"]
    outputs = {}
    for name, states in (("named", ["--state-a", "folded", "--state-b", "unfolded"]),
                         ("q", ["--state-a", "q_native > 0.5", "--state-b", "q_native < 0.5"]),
                         ("rmsd", ["--state-a", "rmsd_ca < 0.3", "--state-b", "rmsd_ca >= 0.3"])):
        assert main(["free-energy", *common, *states, "--output", str(tmp_path / f"{name}.json")]) == 0
        printed = capsys.readouterr().out
        assert "F_B - F_A" in printed and "Pareto k-hat" in printed and "state A" in printed, printed
        outputs[name] = json.loads((tmp_path / f"{name}.json").read_text())
    for record in outputs.values():
        assert record["temperature_K"] == T and record["system"] == "trpzip2-go"
        assert record["n_a"] + record["n_b"] == record["n_written"] and record["k_hat"] is not None
    # the system's states are defined by the same native-contact fraction
    assert outputs["named"]["delta_f_kT"] == pytest.approx(outputs["q"]["delta_f_kT"], abs=1e-12)

    assert main(["train", "trpzip2-go", "--temperature", "-5", "--trajectory", str(md), "-o", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--temperature must be a positive number of kelvin" in err and "\n" not in err
