"""Benchmarks: scripts that print their figures side by side, ours against a peer or a baseline.

Run them from the repository root as modules, e.g. ``python -m benchmarks.ala2_free_energy``.
:mod:`benchmarks.two_state` holds what several of them share.
"""
