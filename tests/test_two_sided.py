"""The two-sided state free energy (BAR between the generator and each state's own samples) against exact answers."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from openmm_bg.analysis import UnreliableWeightsWarning, decorrelated, state_free_energy, two_sided_state_free_energy

from helpers import NSIGMA

# a 1-D target, a normalised mixture: state A (x < 0) holds the mode at -2, state B (x > 0) the modes at 2 and 5
MEANS, SDS, MIX = np.array([-2.0, 2.0, 5.0]), np.array([0.7, 0.6, 0.5]), np.array([0.5, 0.3, 0.2])


def u_target(x):
    log_terms = np.log(MIX / (SDS * math.sqrt(2 * math.pi))) - 0.5 * ((x[:, None] - MEANS) / SDS) ** 2
    return -logsumexp(log_terms, axis=1)


def exact_delta_f():
    p_b = float(np.sum(MIX * stats.norm.sf(0.0, MEANS, SDS)))
    return -math.log(p_b / (1.0 - p_b))


def target_samples(rng, n):
    k = rng.choice(3, size=n, p=MIX)
    return rng.normal(MEANS[k], SDS[k])


def case(rng, proposal_sd, n_gen=20_000, n_state=2_000):
    """Generator N(0, proposal_sd^2); each state's own samples drawn exactly from the target restricted to it."""
    x = rng.normal(0.0, proposal_sd, n_gen)
    log_q = lambda y: stats.norm.logpdf(y, 0.0, proposal_sd)
    log_w = -u_target(x) - log_q(x)
    own = target_samples(rng, 4 * n_state)
    in_a, in_b = own[own < 0][:n_state], own[own > 0][:n_state]
    state_w = [-u_target(s) - log_q(s) for s in (in_a, in_b)]
    return x, log_w, state_w


def test_two_sided_recovers_the_exact_free_energy_with_a_covering_generator():
    rng = np.random.default_rng(1)
    x, log_w, (w_a, w_b) = case(rng, proposal_sd=3.0, n_gen=10_000)
    result = two_sided_state_free_energy(log_w, x < 0, x > 0, w_a, w_b, decorrelate=False, n_bootstrap=200, seed=2, warn=False)
    assert result["reliable"], result["warnings"]
    assert abs(result["delta_f_kT"] - exact_delta_f()) < NSIGMA * result["error_kT"]
    assert 0.0 < result["error_kT"] < 0.1


def test_two_sided_sees_the_mode_that_the_generator_misses():
    """The generator N(0, 1) nearly never reaches the mode at 5, two fifths of state B: importance
    weights give confident wrong answers, the two-sided estimate covers the truth."""
    truth = exact_delta_f()
    one_z, two_z = [], []
    for seed in range(6):
        rng = np.random.default_rng(300 + seed)
        x, log_w, (w_a, w_b) = case(rng, proposal_sd=1.0, n_gen=10_000)
        one = state_free_energy(log_w, x < 0, x > 0, n_bootstrap=50, seed=seed, warn=False)
        two = two_sided_state_free_energy(log_w, x < 0, x > 0, w_a, w_b, decorrelate=False, n_bootstrap=50, seed=seed, warn=False)
        one_z.append((one["delta_f_kT"] - truth) / one["error_kT"])
        two_z.append((two["delta_f_kT"] - truth) / two["error_kT"])
    # the test fails if both estimators behave alike: the one-sided one misleads on most seeds
    assert sum(abs(z) > NSIGMA for z in one_z) >= 4, one_z
    assert max(abs(z) for z in two_z) < NSIGMA, two_z


def test_decorrelated_thins_an_ar1_series_by_its_inefficiency():
    rng = np.random.default_rng(3)
    rho, n = 0.9, 200_000
    noise = rng.normal(size=n)
    series = np.empty(n)
    series[0] = noise[0]
    for t in range(1, n):
        series[t] = rho * series[t - 1] + math.sqrt(1 - rho**2) * noise[t]
    kept, g = decorrelated(series)
    exact_g = (1 + rho) / (1 - rho)  # 19
    assert abs(g - exact_g) < 0.15 * exact_g
    assert abs(kept.size - n / g) < 0.05 * n / g + 2


def test_correlated_state_samples_give_an_honest_error_after_thinning():
    """State samples from a slow Metropolis chain: thinned, the bootstrap error still covers the truth
    over several seeds; the z-scores' spread stays near 1."""
    truth = exact_delta_f()
    z = []
    for seed in range(6):
        rng = np.random.default_rng(200 + seed)
        x = rng.normal(0.0, 3.0, 5_000)
        log_q = lambda y: stats.norm.logpdf(y, 0.0, 3.0)
        log_w = -u_target(x) - log_q(x)
        chains = []
        for lo, hi, start in ((-np.inf, 0.0, -2.0), (0.0, np.inf, 2.0)):
            # 20 Metropolis chains held in the state, stepped together; each is one correlated series
            y = np.full(20, start)
            u = u_target(y)
            out = []
            for _ in range(2_000):
                new = y + rng.normal(0.0, 0.3, y.size)
                inside = (new > lo) & (new < hi)
                u_new = np.where(inside, u_target(np.where(inside, new, start)), np.inf)
                accept = np.log(rng.random(y.size)) < u - u_new
                y, u = np.where(accept, new, y), np.where(accept, u_new, u)
                out.append(y.copy())
            out = np.asarray(out[300:])  # (steps, chains)
            chains.append([-u_target(c) - log_q(c) for c in out.T])
        r = two_sided_state_free_energy(log_w, x < 0, x > 0, chains[0], chains[1], n_bootstrap=50, seed=seed, warn=False)
        assert r["inefficiency_b"] > 2.0  # the chain is correlated, so thinning happened
        z.append((r["delta_f_kT"] - truth) / r["error_kT"])
    z = np.asarray(z)
    assert np.all(np.abs(z) < NSIGMA), z
    assert np.std(z, ddof=1) < 2.0, z


def test_several_trajectories_per_state_are_thinned_separately():
    rng = np.random.default_rng(4)
    x, log_w, (w_a, w_b) = case(rng, proposal_sd=3.0)
    whole = two_sided_state_free_energy(log_w, x < 0, x > 0, w_a, w_b, decorrelate=False, n_bootstrap=20, warn=False)
    split = two_sided_state_free_energy(log_w, x < 0, x > 0, [w_a[:500], w_a[500:]], [w_b], decorrelate=False, n_bootstrap=20, warn=False)
    assert split["delta_f_kT"] == pytest.approx(whole["delta_f_kT"], abs=1e-9)
    assert split["samples_a"] == w_a.size


def test_two_sided_warns_about_a_leg_with_few_samples():
    rng = np.random.default_rng(5)
    x, log_w, (w_a, w_b) = case(rng, proposal_sd=3.0)
    with pytest.warns(UnreliableWeightsWarning, match="independent samples of its own"):
        r = two_sided_state_free_energy(log_w, x < 0, x > 0, w_a, w_b[:4], decorrelate=False, n_bootstrap=20)
    assert not r["reliable"]


def test_two_sided_warns_when_a_leg_leans_on_a_heavy_tail():
    """A generator far wider than the target (N(0, 20^2)) with ten times more state samples than
    generator samples: the ratios p_X / p over the state's samples are heavy-tailed, BAR leans on
    them, and the warning says so and how many more generator samples to draw."""
    rng = np.random.default_rng(7)
    x, log_w, (w_a, w_b) = case(rng, proposal_sd=20.0, n_gen=2_000, n_state=20_000)
    with pytest.warns(UnreliableWeightsWarning, match=r"BAR leans on the state's 20000 own samples.*draw about \d+x more generator samples"):
        r = two_sided_state_free_energy(log_w, x < 0, x > 0, w_a, w_b, decorrelate=False, n_bootstrap=20)
    assert r["k_hat_reverse_a"] > 0.7 and r["k_hat_forward_a"] < 0.5
    assert r["generator_share_a"] < 1
    assert not r["reliable"]


def test_two_sided_with_the_generator_samples_balanced_is_unbiased_and_silent():
    """The same heavy-tailed reverse ratios with more generator samples in each state than own
    samples: no leaning warning, and the estimate agrees with the exact answer (NSIGMA cut)."""
    rng = np.random.default_rng(7)
    x, log_w, (w_a, w_b) = case(rng, proposal_sd=20.0, n_gen=200_000, n_state=5_000)
    r = two_sided_state_free_energy(log_w, x < 0, x > 0, w_a, w_b, decorrelate=False, n_bootstrap=50, seed=3, warn=False)
    assert r["k_hat_reverse_a"] > 0.7 and min(r["generator_share_a"], r["generator_share_b"]) > 1
    assert not any("leans" in m for m in r["warnings"]), r["warnings"]
    assert abs(r["delta_f_kT"] - exact_delta_f()) < NSIGMA * r["error_kT"]


def test_two_sided_warns_about_poor_overlap_not_about_a_heavy_forward_tail():
    """A narrow generator (width 0.5) has heavy-tailed weights over its own samples (forward
    k-hat above 0.7) but overlaps each state's samples: no warning, and the estimate covers
    the exact answer.  A generator of width 0.05 barely overlaps the states' samples: each leg
    whose pymbar BAR overlap is below MIN_BAR_OVERLAP is named."""
    from openmm_bg.analysis.states import MIN_BAR_OVERLAP

    rng = np.random.default_rng(5)
    x, log_w, (w_a, w_b) = case(rng, proposal_sd=0.5, n_gen=20_000)
    r = two_sided_state_free_energy(log_w, x < 0, x > 0, w_a, w_b, decorrelate=False, n_bootstrap=50, seed=3, warn=False)
    assert max(r["k_hat_forward_a"], r["k_hat_forward_b"]) > 0.7 and min(r["overlap_a"], r["overlap_b"]) > MIN_BAR_OVERLAP
    assert r["reliable"] and not r["warnings"], r["warnings"]
    assert abs(r["delta_f_kT"] - exact_delta_f()) < NSIGMA * r["error_kT"]

    x, log_w, (w_a, w_b) = case(np.random.default_rng(11), proposal_sd=0.05, n_gen=20_000)
    with pytest.warns(UnreliableWeightsWarning, match="barely overlap"):
        r = two_sided_state_free_energy(log_w, x < 0, x > 0, w_a, w_b, decorrelate=False, n_bootstrap=20, seed=3)
    assert max(r["overlap_a"], r["overlap_b"]) < MIN_BAR_OVERLAP and not r["reliable"]
    assert [m.split(":")[0] for m in r["warnings"]] == ["state A", "state B"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: {**a, "state_log_weights_b": np.array([np.nan, 1.0])}, "NaN"),
        (lambda a: {**a, "state_log_weights_b": np.empty(0)}, "no samples of its own"),
        (lambda a: {**a, "in_b": np.zeros_like(a["in_b"])}, "no generator sample"),
        (lambda a: {**a, "in_a": a["in_a"][:-1]}, "same shape"),
        (lambda a: {**a, "log_weight": np.full_like(a["log_weight"], np.nan)}, "NaN"),
    ],
)
def test_two_sided_bad_input_is_a_clear_error(change, message):
    rng = np.random.default_rng(6)
    x, log_w, (w_a, w_b) = case(rng, proposal_sd=3.0, n_gen=200, n_state=50)
    args = {"log_weight": log_w, "in_a": x < 0, "in_b": x > 0, "state_log_weights_a": w_a, "state_log_weights_b": w_b}
    with pytest.raises(ValueError, match=message):
        two_sided_state_free_energy(**change(args), n_bootstrap=5, warn=False)
