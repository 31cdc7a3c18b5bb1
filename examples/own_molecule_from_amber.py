"""Your own molecule from Amber files, from start to finish: load, simulate, train, sample, free energy.

The molecule is alanine dipeptide as openmmtools ships it for implicit solvent
(``alanine-dipeptide-gbsa``: an Amber prmtop made with mbondi2 radii, and a .crd), standing
in for your own prmtop and coordinates.  The script

1. loads the files with OBC1 implicit solvent, the model the prmtop was made for, and
   prints the Hamiltonian and the OpenMM platform chosen by timing;
2. runs a short Langevin MD from the .crd positions;
3. trains a small Boltzmann generator on the trajectory, by example, then by example and
   energy, and saves it (the checkpoint carries its molecule: ``openmm-bg sample`` and
   ``openmm-bg free-energy`` need nothing else);
4. draws importance-weighted samples and estimates the free energy between two states
   of the backbone angle phi of residue ALA2, written with the named collective variable
   ``phi_ALA2``, beside the plain count of the MD frames.

The MD never leaves the phi < 0 basin in so short a run, so the two states here split
that basin at phi = -100 degrees.  The budget is the example's, not a recipe's: 40 ps of
MD and a few hundred training steps give a generator whose importance weights are
heavy-tailed (Kish ESS well under 1 %), and the report says so in its ``warning`` lines;
a trustworthy estimate needs the data and training of ``openmm-bg demo``
(docs/training.md).  About 1-2 minutes of compute on 2 cores; ``--quick`` runs every step
in a fraction of that, to check that the path works.

Run from anywhere::

    python examples/own_molecule_from_amber.py [--quick] [--output DIR]
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np
import torch

logging.getLogger("pymbar").setLevel(logging.ERROR)  # before openmmtools imports pymbar: its import-time notices say nothing here
from openmmtools.testsystems import get_data_filename  # noqa: E402

from openmm_bg.analysis import diagnostic_lines, state_free_energy  # noqa: E402
from openmm_bg.molecules import evaluate_states, load_system, parse_state  # noqa: E402
from openmm_bg.sampling import draw_samples  # noqa: E402
from openmm_bg.simulation import run_md  # noqa: E402
from openmm_bg.training import TrainingConfig, load_training_frames, train_molecular_generator  # noqa: E402

#: the two phi states, as expressions over the molecule's named collective variables (radians)
STATES = {"A": "phi_ALA2 < -100*deg", "B": "-100*deg <= phi_ALA2 < 0"}

#: (full run, --quick): MD frames of 100 steps of 1 fs, training iterations by example and by example + energy, samples
BUDGETS = {
    False: {"frames": 400, "ml_iterations": 300, "kl_iterations": 50, "samples": 20_000},
    True: {"frames": 40, "ml_iterations": 30, "kl_iterations": 5, "samples": 1_000},
}


def main(argv: list[str] | None = None) -> dict:
    """Run the example; return its figures (for tests)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a reduced budget (about 15 s) to check that everything runs")
    parser.add_argument("--output", type=Path, default=Path("own-molecule"), help="folder for md.dcd, md.pdb and generator.pt (default ./own-molecule)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the MD, the training and the samples (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    budget = BUDGETS[args.quick]
    progress = not args.no_progress
    torch.set_num_threads(1)  # the networks are small: one thread is the fastest on a few cores
    args.output.mkdir(parents=True, exist_ok=True)

    # 1. the molecule, with the Hamiltonian its prmtop was made for
    prmtop = get_data_filename("data/alanine-dipeptide-gbsa/alanine-dipeptide.prmtop")
    molecule = load_system(prmtop.replace(".prmtop", ".crd"), prmtop, implicit_solvent="OBC1")
    print(f"Hamiltonian: {molecule.description}")
    print(f"OpenMM platform: {molecule.platform} (the fastest in a short timing)")
    print(f"named collective variables: {', '.join(sorted(molecule.collective_variables))}")

    # 2. short MD (resumes if the trajectory is there already)
    trajectory = run_md(
        molecule.system, molecule.topology, molecule.positions, args.output / "md.dcd", budget["frames"],
        temperature=molecule.temperature, steps_per_frame=100, timestep=0.001, platform=molecule.platform,
        seed=args.seed, progress=progress,
    )
    frames = load_training_frames(molecule, [(trajectory, 1)], validation_fraction=0.1)
    print(f"MD: {budget['frames']} frames of 0.1 ps in {trajectory}")

    # 3. a small generator: by example, then by example and energy
    stages = [
        TrainingConfig(n_iterations=budget["ml_iterations"], batch_size=256, lr_schedule="cosine", weight_decay=1e-4,
                       validate_every=25, keep="best", seed=args.seed),
        TrainingConfig(n_iterations=budget["kl_iterations"], batch_size=256, kl_batch_size=64, learning_rate=2e-4, w_kl=0.1,
                       energy_cut=100.0, nonfinite="drop", validate_every=25, overfit_warning=None, seed=args.seed),
    ]
    training = train_molecular_generator(
        molecule, frames, stages, seed=args.seed, architecture={"n_blocks": 2, "hidden": [64, 64], "coupling": "spline"}, progress=progress,
    )
    checkpoint = training.save(args.output / "generator.pt", molecule)
    print(f"trained in {sum(training.wall_time_s):.1f} s ({training.energy_evaluations} energy evaluations); checkpoint {checkpoint}")

    # 4. importance-weighted samples and the free energy between the two phi states
    samples = draw_samples(training.generator, budget["samples"], seed=args.seed, progress=progress, system=molecule.name, temperature_K=molecule.temperature)
    states = [parse_state(STATES[name], molecule.collective_variables, label=f"state {name}") for name in ("A", "B")]
    in_a, in_b = evaluate_states(states, samples.positions)
    estimate = state_free_energy(samples.log_weight, in_a, in_b, n_out_of_domain=samples.n_out_of_domain, seed=args.seed, warn=False)
    md_a, md_b = (int(n) for n in np.sum(evaluate_states(states, frames.positions), axis=1))
    md_delta_f = -math.log(md_b / md_a) if md_a and md_b else math.nan
    print(f"samples: {samples.n_requested} drawn, Kish ESS {100 * estimate['kish_ess']:.2f} %")
    print(f"F_B - F_A = {estimate['delta_f_kT']:.2f} +- {estimate['error_kT']:.2f} kT  (A: {STATES['A']}, B: {STATES['B']})")
    for line in diagnostic_lines(estimate, samples.n_requested, (repr(STATES["A"]), repr(STATES["B"]))):
        print(line)
    print(f"MD frames: {md_a} in A, {md_b} in B: -ln(n_B / n_A) = {md_delta_f:.2f} kT (correlated frames, no error bar)")
    return {"molecule": molecule, "checkpoint": checkpoint, "samples": samples, "estimate": estimate, "md_delta_f": md_delta_f}


if __name__ == "__main__":
    main()
