"""Combining exact reference methods (openmm_bg.reference.estimates.combine_exact_estimates) and the writer script."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from openmm_bg.reference.estimates import combine_exact_estimates

ROOT = Path(__file__).resolve().parent.parent


def method(value, error, repeats):
    return {"delta_f_kT": value, "error_kT": error, "repeat_estimates_kT": list(repeats)}


def test_agreeing_methods_combine_by_inverse_variance():
    r = combine_exact_estimates({"a": method(4.60, 0.03, [4.59, 4.61, 4.60, 4.60]), "b": method(4.64, 0.04, [4.63, 4.65, 4.64, 4.64])})
    w = np.array([1 / 0.03**2, 1 / 0.04**2])
    assert r["delta_f_kT"] == pytest.approx((w @ [4.60, 4.64]) / w.sum())
    assert r["error_kT"] == pytest.approx(max(1 / np.sqrt(w.sum()), 0.02))  # here the inverse-variance error
    assert r["methods_agree"] and r["pairwise_z"]["a vs b"] == pytest.approx(-0.04 / 0.05)


def test_a_method_error_is_never_below_its_repeat_spread():
    """A bootstrap error that misses slow correlations (0.005) is replaced by the repeats' standard error."""
    repeats = [4.4, 4.8, 4.5, 4.7]
    r = combine_exact_estimates({"a": method(4.6, 0.005, repeats), "b": method(4.6, 0.05, [4.6] * 3 + [4.61])})
    assert r["methods"]["a"]["error_kT"] == pytest.approx(np.std(repeats, ddof=1) / 2 * stats.t.ppf(0.975, 3) / stats.norm.ppf(0.975))
    assert r["methods"]["a"]["own_error_kT"] == 0.005


def test_disagreeing_methods_are_flagged_and_widen_the_error():
    r = combine_exact_estimates({"a": method(4.5, 0.02, [4.5] * 3 + [4.51]), "b": method(4.8, 0.02, [4.8] * 3 + [4.81])})
    assert not r["methods_agree"] and abs(r["pairwise_z"]["a vs b"]) > 2
    assert r["error_kT"] >= 0.15 - 1e-12


@pytest.mark.parametrize(
    "estimates, message",
    [
        ({"a": method(4.6, 0.03, [4.6] * 4)}, "at least two"),
        ({"a": method(4.6, 0.03, [4.6] * 3), "b": method(4.6, 0.03, [4.6] * 4)}, "3 independent repeats"),
        ({"a": method(float("nan"), 0.03, [4.6] * 4), "b": method(4.6, 0.03, [4.6] * 4)}, "non-finite"),
        ({"a": method(4.6, 0.0, [4.6] * 4), "b": method(4.6, 0.03, [4.6] * 4)}, "non-positive"),
    ],
)
def test_bad_input_is_a_clear_error(estimates, message):
    with pytest.raises(ValueError, match=message):
        combine_exact_estimates(estimates)


def test_combined_error_covers_the_truth_at_the_gaussian_rate():
    """Two unbiased methods whose repeats are Gaussian (4 repeats each, bootstrap errors half the truth):
    over 2000 trials the combined +-2 sigma interval holds the truth in at least 93 % (95 % expected:
    the repeats' standard error carries Student's t factor; without it the coverage is about 90 %)."""
    rng = np.random.default_rng(11)
    truth, inside = 4.6, 0
    for _ in range(2000):
        estimates = {}
        for name, sd in (("a", 0.1), ("b", 0.14)):
            repeats = truth + sd * rng.standard_normal(4)
            estimates[name] = method(repeats.mean(), sd / 2 / 2, repeats)  # the bootstrap error: half the real one
        r = combine_exact_estimates(estimates)
        inside += abs(r["delta_f_kT"] - truth) <= 2 * r["error_kT"]
    assert inside / 2000 >= 0.93


def _script():
    spec = importlib.util.spec_from_file_location("write_exact_reference", ROOT / "scripts" / "write_exact_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _inputs(tmp_path, integrator):
    chain = tmp_path / "chain"
    chain.mkdir()
    repeats = [{"repeat": r, "cycles": 100, "delta_f": 4.6 + 0.01 * r, "error": 0.06, "transitions": 3, "ghmc_acceptance": 0.9,
                "bg_acceptance": 0.4, "evaluations": 100} for r in range(4)]
    (chain / "analysis.json").write_text(json.dumps({"repeats": repeats, "delta_f_kT": 4.615, "error_bootstrap_kT": 0.03, "energy_evaluations": 400}))
    (chain / "settings.json").write_text(json.dumps({"repeats": 4, "cycles": 100, "round": 50}))
    tempering = tmp_path / "pt-reference.json"
    tempering.write_text(json.dumps({"delta_f_kT": 4.64, "error_kT": 0.04, "repeat_estimates_kT": [4.6, 4.62, 4.66, 4.68],
                                     "iterations_per_repeat": 10, "temperatures_K": [300.0, 400.0], "estimator": "MBAR",
                                     "bootstrap_error_by_block_length": {"5": 0.04}, "energy_evaluations": 10,
                                     "simulation": {"integrator": integrator}}))
    return chain, tempering


def test_writer_records_both_methods_and_refuses_an_unmetropolized_tempering_run(tmp_path):
    script = _script()
    chain, tempering = _inputs(tmp_path, "ghmc")
    out = tmp_path / "exact.json"
    assert script.main(["ala2-vacuum", "--bg-chain", str(chain), "--tempering", str(tempering), "-o", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record["methods"]) == {"bg_chain", "ghmc_tempering"} and record["methods_agree"]
    assert all(m["n_repeats"] == 4 for m in record["methods"].values())
    assert record["published_kT"] == 4.65 and "constraints" in record["published_note"]
    (tmp_path / "hmc").mkdir()
    chain, tempering = _inputs(tmp_path / "hmc", "hmc")
    assert script.main(["ala2-vacuum", "--bg-chain", str(chain), "--tempering", str(tempering), "-o", str(out)]) == 0
    assert "hybrid Monte Carlo" in json.loads(out.read_text())["methods"]["hmc_tempering"]["sampler"]
    (tmp_path / "langevin").mkdir()
    chain, tempering = _inputs(tmp_path / "langevin", "langevin")
    with pytest.raises(ValueError, match=r"needs one of \['ghmc', 'hmc'\]"):
        script.main(["ala2-vacuum", "--bg-chain", str(chain), "--tempering", str(tempering), "-o", str(out)])


def test_writer_takes_a_bias_exchange_run_as_second_method(tmp_path):
    script = _script()
    chain, _ = _inputs(tmp_path, "ghmc")
    bx = tmp_path / "bx-reference.json"
    record = {"delta_f_kT": 4.63, "error_kT": 0.05, "repeat_estimates_kT": [4.58, 4.62, 4.64, 4.68], "iterations_per_repeat": 10,
              "scales": [0.0, 1.0], "estimator": "MBAR", "bootstrap_error_by_block_length": {"5": 0.05}, "energy_evaluations": 10,
              "simulation": {"integrator": "ghmc", "bias_table_kjmol": [[0.0]]}}
    bx.write_text(json.dumps(record))
    out = tmp_path / "exact.json"
    assert script.main(["ala2-vacuum", "--bg-chain", str(chain), "--bias-exchange", str(bx), "-o", str(out)]) == 0
    written = json.loads(out.read_text())
    assert set(written["methods"]) == {"bg_chain", "ghmc_bias_exchange"} and written["methods_agree"]
    assert "bias_table_kjmol" not in written["methods"]["ghmc_bias_exchange"]["settings"]
    with pytest.raises(SystemExit):  # one method is not a cross-check
        script.main(["ala2-vacuum", "--bg-chain", str(chain), "-o", str(out)])
    bx.write_text(json.dumps({**record, "simulation": {"integrator": "langevin"}}))
    with pytest.raises(ValueError, match="needs 'ghmc'"):
        script.main(["ala2-vacuum", "--bg-chain", str(chain), "--bias-exchange", str(bx), "-o", str(out)])


def test_calibration_reads_an_exact_reference_or_a_bg_chain_analysis(tmp_path):
    from benchmarks.calibration import load_ala2_reference
    from openmm_bg.analysis import repeat_standard_error

    exact = tmp_path / "exact.json"
    exact.write_text(json.dumps({"delta_f_kT": 4.62, "error_kT": 0.04}))
    assert load_ala2_reference(exact)["error_kT"] == 0.04
    chain = tmp_path / "analysis.json"
    deltas = [4.5, 4.7, 4.55, 4.75]
    chain.write_text(json.dumps({"delta_f_kT": 4.625, "error_bootstrap_kT": 0.01, "repeats": [{"delta_f": d} for d in deltas]}))
    assert load_ala2_reference(chain)["error_kT"] == pytest.approx(repeat_standard_error(deltas))  # the spread, not the bootstrap
    (tmp_path / "bad.json").write_text(json.dumps({"delta_f_kT": 4.6}))
    with pytest.raises(ValueError, match="neither"):
        load_ala2_reference(tmp_path / "bad.json")


def test_block_length_warning_fires_only_when_the_bootstrap_error_still_grows():
    from openmm_bg.reference.estimates import block_length_warning

    # the tempering run of this session: 0.114 / 0.139 / 0.163 kT at 125 / 250 / 500 iterations
    message = block_length_warning({"250": 0.139, "125": 0.114, "500": 0.163})
    assert message is not None and "0.139 at 250, 0.163 at 500" in message
    assert block_length_warning({"250": 0.139, "500": 0.145, "125": 0.10}) is None  # levelled off
    assert block_length_warning({"250": 0.139}) is None
    assert "not usable" in block_length_warning({"250": 0.0, "500": 0.1})


def test_block_bootstrap_on_an_ar1_series_levels_off_only_past_its_correlation_time():
    """An AR(1) series (integrated correlation time ~200 steps): blocks of 10 and 20 are too short (warning), 2000 and 4000 are not."""
    from openmm_bg.reference.estimates import block_length_warning

    rng = np.random.default_rng(5)
    n, phi = 400_000, np.exp(-1 / 100)
    noise = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = noise[0]
    for i in range(1, n):
        x[i] = phi * x[i - 1] + noise[i]

    def block_error(length):
        means = x[: n // length * length].reshape(-1, length).mean(axis=1)
        return means.std(ddof=1) / np.sqrt(len(means))

    assert block_length_warning({10: block_error(10), 20: block_error(20)}) is not None
    assert block_length_warning({2000: block_error(2000), 4000: block_error(4000)}) is None


def test_bootstrap_errors_by_block_length_tries_half_and_twice_where_four_blocks_fit():
    from openmm_bg.reference.estimates import block_length_warning, bootstrap_errors_by_block_length

    rng = np.random.default_rng(3)
    n = 400
    u = [rng.normal(size=(n, 2, 2)) for _ in range(2)]
    phi = [rng.normal(size=(n, 2)) for _ in range(2)]
    result, errors, warning = bootstrap_errors_by_block_length(u, [p < 0 for p in phi], [p > 0 for p in phi], 50, 20, 0, n)
    assert list(errors) == ["50", "25", "100"] and errors["50"] == result.bootstrap_error
    assert warning == block_length_warning(errors)
    _, errors, _ = bootstrap_errors_by_block_length(u, [p < 0 for p in phi], [p > 0 for p in phi], 150, 20, 0, n)
    assert list(errors) == ["150", "75"]  # 4 blocks of 300 do not fit in 400
