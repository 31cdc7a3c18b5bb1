"""Write openmm_bg/data/README.md (the package data; ``data`` links there): for each bundled file, what it is, the command that made it, seed, platform, size, sha256.

The per-file records below are the single place where provenance is written down;
run this after regenerating any file:

    python scripts/write_data_readme.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "openmm_bg" / "data"

MD_ALA2 = (
    "openmm-bg simulate ala2-vacuum -o runs/issue5/md/ala2-vacuum-300K-md.dcd --frames 10000 --steps-per-frame 1000 "
    "--timestep 0.001 --equilibration-steps 100000 --seed 1 --platform Reference --checkpoint-every 2000 --no-progress"
    "  (or: python -m openmm_bg.commands.simulate ...; all of scripts/make_md_data.sh)"
)
MD_DIMER = (
    "openmm-bg simulate dimer-wca -o runs/issue5/md/dimer-wca-closed.dcd --frames 1000 --steps-per-frame 100 "
    "--timestep 0.005 --equilibration-steps 2000 --seed 1 --platform CPU --no-progress  (OPENMM_CPU_THREADS=1; scripts/make_md_data.sh)"
)
MD_C7EQ = (
    "openmm-bg simulate ala2-vacuum -o runs/issue7/ala2-c7eq-50k.dcd --frames 50000 --steps-per-frame 200 --timestep 0.001 "
    "--equilibration-steps 100000 --seed 2 --platform Reference --no-progress  (OPENMM_CPU_THREADS=1; scripts/make_md_data.sh)"
)
C7AX_START = "python scripts/make_c7ax_start.py data/ala2-vacuum-c7ax-start.pdb --seed 1  (scripts/make_md_data.sh)"
MD_C7AX = (
    "openmm-bg simulate ala2-vacuum --start data/ala2-vacuum-c7ax-start.pdb -o runs/issue7/ala2-c7ax-20k.dcd --frames 20000 "
    "--steps-per-frame 200 --timestep 0.001 --equilibration-steps 10000 --seed 3 --platform Reference --no-progress, "
    "then the same command with --frames 50000 (it resumes from the run's checkpoint and appends)  "
    "(OPENMM_CPU_THREADS=1; scripts/make_md_data.sh)"
)
MD_C7EQ_2 = (
    "openmm-bg simulate ala2-vacuum -o runs/issue7b/ala2-c7eq-b.dcd --frames 40000 --steps-per-frame 500 --timestep 0.001 "
    "--equilibration-steps 100000 --seed 4 --platform Reference --no-progress  (OPENMM_CPU_THREADS=1; scripts/make_md_data.sh)"
)
MD_C7AX_2 = (
    "openmm-bg simulate ala2-vacuum --start data/ala2-vacuum-c7ax-start.pdb -o runs/issue7b/ala2-c7ax-b.dcd --frames 20000 "
    "--steps-per-frame 500 --timestep 0.001 --equilibration-steps 10000 --seed 5 --platform Reference --no-progress  "
    "(OPENMM_CPU_THREADS=1; scripts/make_md_data.sh)"
)
MD_C7AX_BASIN = (
    "python scripts/make_c7ax_basin_data.py runs/issue7b/ala2-c7ax-basin.dcd --frames 20000 --steps-per-frame 1000 "
    "--timestep 0.001 --equilibration-steps 10000 --centre 63 --half-width 57 --k 1000 --seed 6  "
    "(OPENMM_CPU_THREADS=1; scripts/make_md_data.sh)"
)
UMBRELLA = 'OPENMM_CPU_THREADS=1 nice -n 10 python scripts/ala2_umbrella_reference.py runs/issue7/umbrella --json data/ala2-vacuum-umbrella-reference.json --n-windows 36 --k 500 --steps-per-window 1000000 --timestep 0.001 --seed 1  (2 spawned worker processes; raw phi/psi series per window in runs/issue7/umbrella/)'
PT_RUN = (
    "python scripts/run_ala2_tempering.py ala2-vacuum runs/issue7d/ala2-vacuum-pt-g10 --repeats 4 --iterations 33000 "
    "--round 1000 --timestep 0.001 --friction 10 --seed 5000  (true masses; seeds 5000 + repeat; run as four processes, "
    "two at a time on the 2 cores, each `--repeats 1 --seed 500R` in runs/issue7d/pt-g10-R, which makes the same repeats; "
    "repeat 0 was started with --iterations 42000 and stopped at 33000 with a STOP file; "
    "runs/issue7d/ala2-vacuum-pt-g10/repeatR.nc link to them), then "
    "python scripts/analyze_ala2_tempering.py runs/issue7d/ala2-vacuum-pt-g10 data/ala2-vacuum --discard 500 "
    "--block-length 1000 --thin 4 --n-bootstrap 100 --seed 0"
)
PT_RUN_FRICTION1 = (
    "python scripts/run_ala2_tempering.py ala2-vacuum runs/issue7b/ala2-vacuum-pt-1fs --repeats 4 --iterations 42000 "
    "--round 1000 --timestep 0.001 --hydrogen-mass 1.008 --friction 1 --seed 3000  (the --friction option came later; "
    "1/ps was the fixed value then; 1.008 Da is the force field's hydrogen mass: true masses; seeds 3000 + repeat, run as "
    "four processes `--repeats 1 --seed 300R` in runs/issue7b/pt-1fs-R; repeat 0 was stopped at 43000 iterations and the "
    "analysis uses the 42000 that all reached), then python scripts/analyze_ala2_tempering.py "
    "runs/issue7b/ala2-vacuum-pt-1fs <prefix> --discard 500 --block-length 1000 --thin 4 --n-bootstrap 100 --seed 0, "
    "and the JSON renamed; its samples file is not shipped"
)
PT_RUN_2FS = (
    "python scripts/run_ala2_tempering.py ala2-vacuum runs/issue5/ala2-vacuum-pt --repeats 4 --iterations 12000 "
    "--round 1000 --timestep 0.002 --hydrogen-mass 4 --seed 2024  (a resumed segment reseeds from the seed and the "
    "iteration it resumes at, so the resume points are part of the recipe: every 1000 iterations up to 12000; then the "
    "same with --iterations 42000 --round 2000, stopped at 16000 iterations (STOP file); then again with --round 1000, "
    "stopped at 25000), then python scripts/analyze_ala2_tempering.py runs/issue5/ala2-vacuum-pt <prefix> --discard 500 "
    "--block-length 1000 --thin 4 --n-bootstrap 100 --seed 0, and the JSON renamed; its samples file is not shipped"
)

MD_PARTICLE_DIMER = (
    'PYTHONPATH=. OPENMM_CPU_THREADS=1 nice -n 10 python scripts/make_particle_dimer_data.py runs/particle-dimer --frames 4000 --steps-per-frame 200 --timestep 0.01 --friction 1 --equilibration-steps 10000 --seed 1 --no-progress  (the closed run uses seed 1, the open run seed 2; raw trajectories with free z in runs/particle-dimer/, not shipped)'
)


RECORDS = {
    "ala2-vacuum-300K-md.dcd": dict(
        what="Training data: unbiased Langevin MD of `ala2-vacuum` (ff96, no constraints, true masses) at 300 K, "
        "LangevinMiddleIntegrator 1 fs, friction 1/ps, 0.1 ns equilibration discarded, then one frame per ps "
        "(10,000 frames, 10 ns), float32 DCD in Angstrom as mdtraj writes it.",
        command=MD_ALA2, seed="1", platform="Reference (OpenMM 8.6.1, CPU only)",
    ),
    "ala2-vacuum-300K-md.pdb": dict(
        what="Topology of the DCD above (the starting structure); atom order as openmmtools' AlanineDipeptideVacuum.",
        command=MD_ALA2, seed="1", platform="Reference",
    ),
    "ala2-vacuum-300K-c7eq.dcd": dict(
        what="Generator training data, phi < 0 basin: unbiased Langevin MD of `ala2-vacuum` at 300 K from the bundled "
        "C7eq structure, LangevinMiddleIntegrator 1 fs, friction 1/ps, 0.1 ns equilibration discarded, then one frame per "
        "0.2 ps (50,000 frames, 10 ns; 10,100,000 MD steps in all). 0.07 % of the frames are brief crossings of phi = 0 "
        "(74 crossings, none into the C7ax core). Topology: `ala2-vacuum-300K-md.pdb`.",
        command=MD_C7EQ, seed="2", platform="Reference (OpenMM 8.6.1, CPU only)",
    ),
    "ala2-vacuum-c7ax-start.pdb": dict(
        what="A C7ax (phi > 0) structure of `ala2-vacuum`: the bundled C7eq structure pulled to phi = +75 deg, "
        "psi = -65 deg by torsion restraints (minimisation, 20 ps restrained MD at 300 K), released and minimised "
        "(phi 62.3 deg, psi -66.1 deg; 20,000 MD steps).",
        command=C7AX_START, seed="1", platform="Reference",
    ),
    "ala2-vacuum-300K-c7ax.dcd": dict(
        what="Generator training data, phi > 0 basin: unbiased Langevin MD of `ala2-vacuum` at 300 K started from "
        "`ala2-vacuum-c7ax-start.pdb`, 1 fs, friction 1/ps, 10 ps equilibration discarded, then one frame per 0.2 ps "
        "(50,000 frames, 10 ns; 10,010,000 MD steps). The run stays in the C7ax basin for 3.9 ns (frames up to 19,643) "
        "and then in phi < 0: 39.3 % of the frames have phi > 0 (37 crossings of phi = 0). "
        "MD started in each basin gives the generator both states; their relative weight comes from reweighting, "
        "not from the data. Topology: `ala2-vacuum-300K-md.pdb`.",
        command=MD_C7AX, seed="3", platform="Reference (OpenMM 8.6.1, CPU only)",
    ),
    "ala2-vacuum-300K-c7eq-2.dcd": dict(
        what="More generator training data, phi < 0 basin: a second, independent run like `ala2-vacuum-300K-c7eq.dcd` "
        "(other seed), 0.1 ns equilibration discarded, then one frame per 0.5 ps (40,000 frames, 20 ns; 20,100,000 MD "
        "steps). 0.09 % of the frames have phi > 0 (74 crossings of phi = 0, none into the C7ax core 0.5 < phi < 2.2). "
        "Topology: `ala2-vacuum-300K-md.pdb`.",
        command=MD_C7EQ_2, seed="4", platform="Reference (OpenMM 8.6.1, CPU only)",
    ),
    "ala2-vacuum-300K-c7ax-2.dcd": dict(
        what="More generator training data from the C7ax structure: a second run like `ala2-vacuum-300K-c7ax.dcd` "
        "(other seed), 10 ps equilibration discarded, then one frame per 0.5 ps (20,000 frames, 10 ns; 10,010,000 MD "
        "steps). It leaves the C7ax basin after 1.15 ns: 11.6 % of the frames have phi > 0 (33 crossings of phi = 0). "
        "Topology: `ala2-vacuum-300K-md.pdb`.",
        command=MD_C7AX_2, seed="5", platform="Reference (OpenMM 8.6.1, CPU only)",
    ),
    "ala2-vacuum-300K-c7ax-basin.dcd": dict(
        what="Generator training data held in the phi > 0 basin: Langevin MD of `ala2-vacuum` at 300 K (1 fs, friction "
        "1/ps) from `ala2-vacuum-c7ax-start.pdb` with a flat-bottom restraint on phi, 0.5 k max(0, |phi - 63 deg| - 57 deg)^2, "
        "k = 1000 kJ/mol/rad^2, which is exactly zero for 6 <= phi <= 120 deg: frames in that window sample the unbiased "
        "Boltzmann distribution. 10 ps equilibration discarded, then one frame per ps (20,000 frames, 20 ns; 20,010,000 MD "
        "steps). phi stays within 4.3 to 123.8 deg; 99.98 % of the frames are inside the flat bottom. The restraint only sets which configurations the generator learns from; "
        "importance weights use the unbiased energy. Topology: `ala2-vacuum-300K-md.pdb`.",
        command=MD_C7AX_BASIN, seed="6", platform="Reference (OpenMM 8.6.1, CPU only)",
    ),
    "ala2-vacuum-umbrella-reference.json": dict(
        what='Independent reference for ala2-vacuum at 300 K by umbrella sampling along phi: dF = F(phi > 0) - F(phi < 0) = 4.98 +- 0.15 kT (block bootstrap; first / second half of every window 4.90 / 5.07 kT), the phi free-energy profile (72 bins, kT, bootstrap errors) and all settings. 36 windows every 10 deg with harmonic-cosine biases 0.5 k (1 - cos(phi - theta0)), k = 500 kJ/mol; LangevinMiddleIntegrator 1 fs, friction 1/ps, true masses, no constraints; per window 10 ps pull + 20 ps equilibration discarded, then 1 ns sampled every 0.1 ps (37,080,000 MD steps in all); MBAR (pymbar 4) on the bias energies, errors by block bootstrap (5 blocks per window, 100 resamples). CAUTION: not converged. psi is a hidden slow coordinate at the phi barriers, and the two paths around the phi circle disagree (MBAR on these windows: via phi = 0, 5.30 kT; via phi = 120 deg, 4.60 kT). A replica-exchange umbrella run with the same windows (`--replica-exchange`, output in runs/issue7/umbrella-reus, not shipped) gave 4.85 +- 0.13 kT, halves 4.98 / 4.71, paths 4.97 / 4.70; another with 2 fs steps and 4 Da hydrogens (`--timestep 0.002 --hydrogen-mass 4 --replica-exchange`, runs/issue7/umbrella-reus-2fs) gave 4.73 +- 0.14 kT, halves 4.65 / 4.80, paths 4.70 / 4.76. Read this file as a bracket, not a reference.',
        command=UMBRELLA, seed='1 (per-window integrator seeds derived from it); bootstrap 0', platform='Reference (OpenMM 8.6.1, CPU only, one thread per worker)',
    ),
    "ala2-vacuum-pt.npz": dict(
        what="Parallel tempering of `ala2-vacuum` (openmmtools ReplicaExchangeSampler, swap-all), four independent repeats "
        "of 33,000 iterations, 8 temperatures 300-1000 K (geometric). "
        "Arrays in state (temperature) order: `temperatures` (K), `potential_energy` (repeat, iteration, state; kJ/mol, float32), "
        "`phi`, `psi` (same shape, float32 radians), `steps_per_iteration`. Iteration 0 of each repeat is the start. "
        "True masses, no constraints, 1 fs LangevinMiddleIntegrator, friction 10/ps, "
        "velocities redrawn each iteration, 500 steps (0.5 ps) per iteration.",
        command=PT_RUN, seed="5000, 5001, 5002, 5003 (one per repeat)", platform="Reference",
    ),
    "ala2-vacuum-reference.json": dict(
        what="Reference dF = F(phi > 0) - F(phi < 0) at 300 K in kT, by MBAR over all temperatures and repeats, "
        "with its error (the larger of a block bootstrap within repeats and the standard error over repeats), "
        "the cost in energy evaluations, and all settings.",
        command=PT_RUN, seed="simulation 5000-5003; bootstrap 0", platform="Reference",
    ),
    "ala2-vacuum-1fs-friction1-reference.json": dict(
        what="The PREVIOUS reference, superseded and kept for the record: the same recipe and analysis with friction 1/ps "
        "(four repeats of 42,000 iterations), 4.782 +- 0.066 kT. Every replica redraws its velocities at each iteration, "
        "and at 1/ps that heats it: the 300 K replica's mean potential energy in phi < 0 was 0.25 kT above the bundled "
        "plain MD, 7 standard errors (`tests/test_data.py::test_tempering_energies_agree_with_plain_md`, which it fails; "
        "`benchmarks/langevin_velocity_refresh.py` compares the samplers).",
        command=PT_RUN_FRICTION1, seed="simulation 3000-3003; bootstrap 0", platform="Reference",
    ),
    "ala2-vacuum-2fs-hmr-reference.json": dict(
        what="An EARLIER reference, superseded and kept for the record: the same analysis of four repeats of 25,000 "
        "iterations with 2 fs steps, hydrogens repartitioned to 4 Da and friction 1/ps (500 steps = 1 ps per "
        "iteration). It gave 4.419 +- 0.064 kT, 0.36 kT below the 1 fs, 1/ps runs "
        "(ala2-vacuum-1fs-friction1-reference.json): integrator error, carried down to 300 K by the exchanges. "
        "Compare with `python -m benchmarks.ala2_free_energy --reference-file data/ala2-vacuum-2fs-hmr-reference.json`.",
        command=PT_RUN_2FS, seed="simulation 2024-2027; bootstrap 0", platform="Reference",
    ),
    "dimer-wca-closed.dcd": dict(
        what="MD of `dimer-wca` (216 particles, reduced density 0.96, 98.88 K) started with the dimer closed: "
        "LangevinMiddleIntegrator 5 fs, friction 1/ps, 10 ps equilibration, then one frame per 0.5 ps, 1000 frames "
        "(500 ps); the dimer distance stays below the barrier (0.346-0.444 nm vs 0.484 nm) in every frame. "
        "(The same run with 1 ps frames opened after 540 ps, so this one is kept short.) Box lengths are in the DCD.",
        command=MD_DIMER, seed="1", platform="CPU (1 thread)",
    ),
    "dimer-wca-closed.pdb": dict(
        what="Topology of the dimer DCD (its starting structure).", command=MD_DIMER, seed="1", platform="CPU",
    ),
    "trpzip2-implicit.pdb": dict(
        what="Structure of `trpzip2-implicit`: trpzip2 (1LE1 model 1) from openmmtools' bundled data/trpzip2-explicit "
        "(old-format prmtop + crd), water and the Cl- ion removed, centred in a 4 nm frame.",
        command="python scripts/make_trpzip2_pdb.py data/trpzip2-implicit.pdb",
        seed="none (deterministic)", platform="none (no simulation)",
    ),
    'particle-dimer-closed.dcd': dict(
        what="Generator training data, closed state: unbiased Langevin MD of `particle-dimer` (the 2-D dimer among 36 repulsive particles of Noé et al. 2019, `openmm_bg.energies.particle_dimer`) at 300 K, the System's temperature, where its kT is the model's energy unit (model temperature 1); LangevinMiddleIntegrator 10 fs, friction 1/ps, argon masses, `openmm_bg.simulation.run_md`; started from the relaxed lattice start (`openmm_bg.energies.particle_dimer.start_positions`) with the dimer at the bond's closed minimum (0.9435 nm); 100 ps equilibration discarded, then one frame per 2 ps (4,000 frames, 8 ns; 810,000 MD steps). The System's z coordinates are standard normals independent of (x, y); the shipped frames have z set to 0, so they sample the model's (x, y) distribution at z = 0. Dimer distance 0.787-1.172 nm (mean 0.930 nm; barrier top 1.4950 nm): every frame is closed. Mean reduced energy 56.07 kT. Configurational temperature <|grad u|^2> / <laplacian u> = 1.004 +- 0.004 (20 blocks) (`tests/test_particle_dimer.py`). Topology: `particle-dimer-closed.pdb`.",
        command=MD_PARTICLE_DIMER, seed='1', platform='Reference (OpenMM 8.6.1, CPU only)',
    ),
    'particle-dimer-closed.pdb': dict(
        what='Topology and start of `particle-dimer-closed.dcd`: the relaxed lattice start with the dimer at 0.9385 nm (closed), z = 0. Atoms D1, D2 (residue DIM) are the dimer, S (residues BTH) the solvent; all argon.',
        command=MD_PARTICLE_DIMER, seed='1 (the run it starts; the structure itself is deterministic)', platform='Reference',
    ),
    'particle-dimer-open.dcd': dict(
        what="Generator training data, open state: unbiased Langevin MD of `particle-dimer` (the 2-D dimer among 36 repulsive particles of Noé et al. 2019, `openmm_bg.energies.particle_dimer`) at 300 K, the System's temperature, where its kT is the model's energy unit (model temperature 1); LangevinMiddleIntegrator 10 fs, friction 1/ps, argon masses, `openmm_bg.simulation.run_md`; started from the relaxed lattice start (`openmm_bg.energies.particle_dimer.start_positions`) with the dimer at the bond's open minimum (2.0615 nm); 100 ps equilibration discarded, then one frame per 2 ps (4,000 frames, 8 ns; 810,000 MD steps). The System's z coordinates are standard normals independent of (x, y); the shipped frames have z set to 0, so they sample the model's (x, y) distribution at z = 0. Dimer distance 1.860-2.202 nm (mean 2.060 nm; barrier top 1.4950 nm): every frame is open. Mean reduced energy 56.37 kT. Configurational temperature <|grad u|^2> / <laplacian u> = 1.003 +- 0.006 (20 blocks) (`tests/test_particle_dimer.py`). Topology: `particle-dimer-open.pdb`.",
        command=MD_PARTICLE_DIMER, seed='2', platform='Reference (OpenMM 8.6.1, CPU only)',
    ),
    'particle-dimer-open.pdb': dict(
        what='Topology and start of `particle-dimer-open.dcd`: the relaxed lattice start with the dimer at 2.0520 nm (open), z = 0.',
        command=MD_PARTICLE_DIMER, seed='2 (the run it starts; the structure itself is deterministic)', platform='Reference',
    ),
}


def main() -> None:
    lines = [
        "# Bundled data",
        "",
        "Every file here was produced by this package's own code on the 2-core development machine "
        "(no GPU, no network). `scripts/write_data_readme.py` writes this file and the checksums; "
        "`tests/test_data.py` recomputes them. They are package data, installed with openmm_bg; load them with "
        "`openmm_bg.molecules.load_bundled_trajectory` and `openmm_bg.reference.load_tempering_samples` / `load_reference` "
        "(`openmm_bg.reference.bundled_path` gives any file's path).",
        "",
    ]
    for system in ("ala2-vacuum", "ala2-implicit"):
        reference = DATA / f"{system}-reference.json"
        if not reference.exists():
            continue
        record = json.loads(reference.read_text())
        steps = record["simulation"].get("steps", 500)
        label = "" if system == "ala2-vacuum" else " (PRELIMINARY)"
        lines += [
            f"## Reference free energy ({system}, 300 K){label}",
            "",
            f"dF = F(phi > 0) - F(phi < 0) = **{record['delta_f_kT']:.3f} +- {record['error_kT']:.3f} kT** "
            f"(block bootstrap {record['bootstrap_error_kT']:.3f} kT, standard error over {record['n_repeats']} repeats "
            f"{record['repeat_standard_error_kT']:.3f} kT; repeats: "
            + ", ".join(f"{x:.3f}" for x in record["repeat_estimates_kT"])
            + f"). Cost: {record['energy_evaluations']:,} energy evaluations "
            f"({record['n_repeats']} repeats x {record['iterations_per_repeat']} iterations x "
            f"{len(record['temperatures_K'])} replicas x ({steps} steps + 2), plus the initial swap matrices). "
            f"Time step {1000 * record['simulation']['timestep']:g} fs, "
            + ("true masses" if record["simulation"].get("hydrogen_mass") in (None, 1.008) else
               f"hydrogen mass {record['simulation']['hydrogen_mass']:g} Da")
            + f", friction {record['simulation'].get('friction', 1.0):g}/ps (1/ps where the settings do not record it).",
            "",
        ]
        earlier = [(DATA / f"{system}-{tag}-reference.json", what) for tag, what in (
            ("1fs-friction1", "the same recipe with friction 1/ps, whose velocity redraws heated the replicas"),
            ("2fs-hmr", "2 fs steps, 4 Da hydrogens and friction 1/ps"),
        )]
        earlier = [(path, what, json.loads(path.read_text())) for path, what in earlier if path.exists()]
        if earlier:
            lines += [
                "It replaces earlier references, kept for the record (see their entries below): "
                + "; ".join(f"{what}, {old['delta_f_kT']:.3f} +- {old['error_kT']:.3f} kT (`{path.name}`)"
                            for path, what, old in earlier)
                + ".",
                "",
            ]
    lines += ["## Files", ""]
    for name, record in RECORDS.items():
        path = DATA / name
        if not path.exists():
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines += [
            f"### `{name}`",
            "",
            record["what"],
            "",
            f"- command: `{record['command']}`",
            f"- seed: {record['seed']}",
            f"- platform: {record['platform']}",
            f"- size: {path.stat().st_size} bytes",
            f"- sha256: `{digest}`",
            "",
        ]
    lines += [
        "## Not shipped",
        "",
        "The raw openmmtools NetCDF files of the tempering runs (`runs/issue7b/pt-1fs-R/repeat0.nc`, "
        "positions of every replica at every iteration) are regenerated by the commands above.",
        "",
    ]
    (DATA / "README.md").write_text("\n".join(lines))
    print(f"wrote {DATA / 'README.md'}")


if __name__ == "__main__":
    main()
