"""End-to-end recipes behind ``openmm-bg demo`` and ``openmm-bg toy``, with their figures.

Import the modules themselves (:mod:`openmm_bg.recipes.demo`, :mod:`openmm_bg.recipes.toy`,
:mod:`openmm_bg.recipes.demo_plots`, :mod:`openmm_bg.recipes.particle_dimer`, :mod:`openmm_bg.recipes.go_model`); nothing is loaded here.
"""
