from setuptools import find_packages, setup

setup(
    name="openmm_bg",
    version="0.2.0",
    description="Boltzmann generators for OpenMM: training, one-shot sampling, free energies and openmmtools MCMC moves",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["openmm_bg", "openmm_bg.*"]),
    # the bundled trajectories, references and structures (provenance in openmm_bg/data/README.md)
    package_data={"openmm_bg": ["data/*"]},
    python_requires=">=3.10",
    # torch is pinned by the install instructions (torch==2.13.0 first, CPU build); the range here
    # is satisfied by it so pip never replaces it with a CUDA build.
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "torch>=2.1",
        "openmm>=8.1",
        "openmmtools>=0.23",
        "mdtraj>=1.9.9",
        "pymbar>=4.0",
        "tqdm>=4.60",
        "matplotlib>=3.6",
        "pyyaml>=6.0",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-timeout>=2.1", "dask[distributed]>=2023.1", "hypothesis>=6.100"],
        "distributed": ["dask[distributed]>=2023.1"],
        "bench": ["zuko>=1.0"],
    },
    entry_points={"console_scripts": ["openmm-bg=openmm_bg.cli:main"]},
)
