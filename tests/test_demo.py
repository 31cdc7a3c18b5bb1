"""openmm-bg demo on the quick budget: its outputs, its numbers recomputed independently, settings and errors.

The demo runs once (module fixture, about 10 s); the checks recompute the ESS, dF and
the state fractions with numpy and mdtraj from the files it wrote, so no expected
numbers are hard-coded.
"""

import contextlib
import io
import json

import mdtraj as md
import numpy as np
import pytest
import torch

from openmm_bg.cli import main
from openmm_bg.sampling.samples import load_checkpoint
from openmm_bg.reference.bundled import load_reference
from openmm_bg.generator.checkpoints import load_generator
from openmm_bg.recipes.demo import DEFAULT_KL, DEFAULT_ML, OUTPUT_FILES, DemoSettings
from openmm_bg.reference import DATA_DIR


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["demo", "--quick", "--output", str(out), "--no-progress"])
    assert status == 0
    return out, printed.getvalue(), json.loads((out / "report.json").read_text())


def test_outputs_exist_and_reload(demo):
    out, printed, report = demo
    for name in OUTPUT_FILES.values():
        assert (out / name).is_file(), name
        assert str(out / name) in printed
    for name in ("ramachandran.png", "losses.png", "log_weights.png"):
        assert (out / name).stat().st_size > 10_000
    generator = load_generator(out / "generator.pt")
    assert tuple(generator.event_shape) == (22, 3)
    # what openmm-bg sample / free-energy do with it: the system and temperature come from the metadata
    reloaded, molecule, temperature, metadata = load_checkpoint(out / "generator.pt")
    assert molecule.name == "ala2-vacuum" and temperature == 300.0
    assert DemoSettings.from_dict(metadata["demo_settings"]) == DemoSettings.quick()
    with np.load(out / "samples.npz") as arrays:
        n_requested, n_written, n_out = (int(arrays[k]) for k in ("n_requested", "n_written", "n_out_of_domain"))
        assert arrays["log_weight"].shape == (n_written,)
    assert n_requested == DemoSettings.quick().n_samples == report["n_samples"]
    assert n_written <= n_requested and n_written + n_out == n_requested
    assert report["n_out_of_domain"] == n_out and report["n_written"] == n_written
    x = torch.as_tensor(md.load(str(out / "samples.dcd"), top=str(out / "samples.pdb")).xyz[:5], dtype=torch.float64)
    assert torch.isfinite(reloaded.log_prob(x)).all()


def test_report_numbers_match_an_independent_recomputation(demo):
    out, _, report = demo
    with np.load(out / "samples.npz") as arrays:
        log_w, n_requested = arrays["log_weight"], int(arrays["n_requested"])
    phi = md.compute_phi(md.load(str(out / "samples.dcd"), top=str(out / "samples.pdb")))[1][:, 0]
    assert phi.shape == log_w.shape
    in_a, in_b = phi < 0, phi > 0
    finite = np.isfinite(log_w)
    w = np.where(finite, np.exp(log_w - log_w[finite].max()), 0.0)
    assert report["kish_ess"] == pytest.approx(w.sum() ** 2 / (n_requested * np.sum(w**2)), rel=1e-10)
    assert report["delta_f"] == pytest.approx(-np.log(w[in_b].sum() / w[in_a].sum()), rel=1e-9, abs=1e-9)
    assert report["raw_fraction_b"] == pytest.approx(in_b.mean(), abs=1e-12)
    assert report["state_stats"]["n_a"] == in_a.sum() and report["state_stats"]["n_b"] == in_b.sum()
    assert np.isfinite(report["delta_f_error"]) and report["delta_f_error"] > 0
    reference = load_reference("ala2-vacuum")
    assert report["reference"]["delta_f_kT"] == pytest.approx(reference["delta_f_kT"])
    assert report["reference"]["error_kT"] == pytest.approx(reference["error_kT"])
    deviation = report["delta_f"] - reference["delta_f_kT"]
    assert report["deviation"] == pytest.approx(deviation)
    assert report["within_0.2_kT"] == (abs(deviation) <= 0.2)
    assert report["within_2_sigma"] == (abs(deviation) <= 2 * report["delta_f_error"])
    combined = np.sqrt(report["delta_f_error"] ** 2 + reference["error_kT"] ** 2)
    assert report["within_2_combined_sigma"] == (abs(deviation) <= 2 * combined)


def test_held_out_frames_are_the_end_of_each_file_and_are_scored(demo):
    out, printed, report = demo
    settings = DemoSettings.from_dict(report["settings"])
    history = json.loads((out / OUTPUT_FILES["history"]).read_text())
    checkpoint = torch.load(out / OUTPUT_FILES["generator"], weights_only=True)
    total = 0
    for entry in settings.training_data:
        n = len(range(0, md.load(str(DATA_DIR / entry["file"]), top=str(DATA_DIR / settings.training_topology)).n_frames, entry["stride"]))
        held = round(settings.validation_fraction * n)
        assert report["frames"][entry["file"]] == n - held
        total += held
    assert checkpoint["metadata"]["n_validation_frames"] == total > 0
    # the last row of stage 2 scores the final generator on exactly those frames
    generator, molecule, _, _ = load_checkpoint(out / OUTPUT_FILES["generator"])
    frames = [md.load(str(DATA_DIR / e["file"]), top=str(DATA_DIR / settings.training_topology))[:: e["stride"]] for e in settings.training_data]
    held_out = np.concatenate([f.xyz[f.n_frames - round(settings.validation_fraction * f.n_frames):] for f in frames]).astype(np.float64)
    with torch.no_grad():
        expected = float(-generator.log_prob(torch.as_tensor(held_out)).mean())
    # recorded during training, in its float32 precision; the checkpoint is evaluated in float64
    assert history["kl"][-1]["ml_validation"] == pytest.approx(expected, rel=1e-6)
    assert "held-out frames" in printed


def test_energy_evaluations_and_times_add_up(demo):
    out, printed, report = demo
    counts, settings = report["energy_evaluations"], DemoSettings.from_yaml(out / "settings.yaml")
    assert counts["total"] == counts["md_data"] + counts["training"] + counts["sampling"]
    assert counts["md_data"] == sum(entry["md_steps"] for entry in settings.training_data) > 0
    with np.load(out / "samples.npz") as arrays:
        assert counts["sampling"] == int(arrays["energy_evaluations"]) == int(arrays["n_written"])
    history = json.loads((out / "history.json").read_text())
    assert len(history["ml"]) == settings.ml["n_iterations"] and len(history["kl"]) == settings.kl["n_iterations"]
    assert not any("kl" in row for row in history["ml"])
    kl_config = settings.stage_config("kl")
    assert counts["training"] == sum("kl" in row for row in history["kl"]) * kl_config.kl_batch_size * len(kl_config.temperatures) > 0
    times = report["wall_time_s"]
    assert times["training"] == pytest.approx(times["training_ml"] + times["training_kl"])
    assert times["total"] >= times["loading"] + times["training"] + times["sampling"] - 1e-9
    assert f"{counts['total']:,}" in printed and "Kish ESS" in printed and "F(B) - F(A)" in printed


def test_settings_round_trip_and_merge(tmp_path, demo):
    out, _, report = demo
    assert DemoSettings.from_yaml(out / "settings.yaml") == DemoSettings.quick() == DemoSettings.from_dict(report["settings"])
    for settings in (DemoSettings(), DemoSettings.quick(), DemoSettings(architecture={"hidden": (64,)}, kl={"n_iterations": 5, "energy_cut": None})):
        path = settings.to_yaml(tmp_path / "s.yaml")
        assert DemoSettings.from_yaml(path) == settings
        assert DemoSettings.from_dict(settings.to_dict()) == settings
    # nested settings merge over the defaults, or over a base
    assert DemoSettings(ml={"n_iterations": 7}).ml == {**DEFAULT_ML, "n_iterations": 7}
    merged = DemoSettings.from_dict({"ml": {"learning_rate": 5e-4}, "seed": 3}, base=DemoSettings.quick())
    assert merged.ml["n_iterations"] == DemoSettings.quick().ml["n_iterations"] and merged.ml["learning_rate"] == 5e-4 and merged.seed == 3
    assert DemoSettings(kl={"n_iterations": 0}).stage_config("kl") is None and DemoSettings.quick().stage_config("kl").w_kl == 0.1
    assert DemoSettings().stage_config("kl").n_iterations == DEFAULT_KL["n_iterations"] > 0


@pytest.mark.parametrize(
    "values, message",
    [
        ({"n_sample": 10}, r"unknown demo settings \['n_sample'\]; known settings are .*'n_samples'"),
        ({"ml": {"learning_rat": 0.1}}, "ml: unknown training settings"),
        ({"kl": {"w_kll": 1.0}}, "kl: unknown training settings"),
        ({"architecture": {"n_block": 2}}, r"unknown architecture settings \['n_block'\]"),
        ({"training_data": [{"file": "x.dcd"}]}, "md_steps"),
        ({"n_bootstrap": 1}, "n_bootstrap"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
    ],
)
def test_bad_settings_raise(values, message):
    with pytest.raises(ValueError, match=message):
        DemoSettings.from_dict(values)


@pytest.mark.parametrize(
    "config, message",
    [
        (None, "demo settings file not found"),
        ("n_sample: 10\n", "unknown demo settings"),
        ("training_data: [{file: no-such-file.dcd, md_steps: 0}]\n", "no-such-file.dcd"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(config, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENMM_BG_DEBUG", raising=False)
    path = tmp_path / "demo.yaml"
    if config is not None:
        path.write_text(config)
    assert main(["demo", "--quick", "--config", str(path), "--output", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openmm-bg demo: error:") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
