"""Bundled files (package data in ``openmm_bg/data``) and the estimates behind the bundled references."""

from .bundled import DATA_DIR, REFERENCE_STATES, bundled_path, load_reference, load_tempering_samples

__all__ = ["DATA_DIR", "REFERENCE_STATES", "bundled_path", "load_reference", "load_tempering_samples"]
