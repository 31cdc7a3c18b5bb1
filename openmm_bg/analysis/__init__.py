"""Estimates from weighted samples and works, on plain arrays: reweighting, free energies, diagnostics."""

from .diagnostics import (
    MIN_STATE_ESS,
    UnreliableWeightsWarning,
    generalized_pareto_fit,
    pareto_khat,
    pareto_khat_threshold,
    state_ess,
    weight_warnings,
)
from .free_energy import StateFreeEnergies, bar, bar_through_latent, fep, kl_bound, latent_works, macrostate_free_energy, mbar
from .reweighting import (
    Estimate,
    FreeEnergyProfile,
    free_energy_profile,
    kish_ess,
    log_importance_weights,
    normalized_weights,
    state_free_energy_difference,
    weighted_mean,
)
from .states import (
    combine_trainings,
    decorrelated,
    diagnostic_lines,
    khat_line,
    repeat_standard_error,
    state_free_energy,
    two_sided_state_free_energy,
)

__all__ = [
    "Estimate",
    "FreeEnergyProfile",
    "log_importance_weights",
    "normalized_weights",
    "kish_ess",
    "weighted_mean",
    "free_energy_profile",
    "state_free_energy_difference",
    "state_free_energy",
    "two_sided_state_free_energy",
    "decorrelated",
    "combine_trainings",
    "repeat_standard_error",
    "diagnostic_lines",
    "khat_line",
    "UnreliableWeightsWarning",
    "MIN_STATE_ESS",
    "pareto_khat",
    "pareto_khat_threshold",
    "generalized_pareto_fit",
    "state_ess",
    "weight_warnings",
    "fep",
    "bar",
    "latent_works",
    "bar_through_latent",
    "macrostate_free_energy",
    "kl_bound",
    "mbar",
    "StateFreeEnergies",
]
