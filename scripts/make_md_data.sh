#!/bin/bash
# Regenerate the bundled MD trajectories (data/ala2-vacuum-300K-md.*, data/dimer-wca-closed.*).
# Runs on one core under nice; about 4 min + 30 s on the shared 2-core development machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export OPENMM_CPU_THREADS=1
mkdir -p runs/issue5/md runs/issue7 runs/issue7b
nice -n 19 python -m openmm_bg.commands.simulate ala2-vacuum -o runs/issue5/md/ala2-vacuum-300K-md.dcd \
    --frames 10000 --steps-per-frame 1000 --timestep 0.001 --equilibration-steps 100000 --seed 1 \
    --platform Reference --checkpoint-every 2000 --no-progress
nice -n 19 python -m openmm_bg.commands.simulate dimer-wca -o runs/issue5/md/dimer-wca-closed.dcd \
    --frames 1000 --steps-per-frame 100 --timestep 0.005 --equilibration-steps 2000 --seed 1 --platform CPU --no-progress
cp runs/issue5/md/ala2-vacuum-300K-md.dcd runs/issue5/md/ala2-vacuum-300K-md.pdb \
   runs/issue5/md/dimer-wca-closed.dcd runs/issue5/md/dimer-wca-closed.pdb data/
python scripts/write_data_readme.py

# Issue 7: generator training data in both phi basins (about 5 + 2 min on one core).
nice -n 19 python -m openmm_bg.commands.simulate ala2-vacuum -o runs/issue7/ala2-c7eq-50k.dcd --frames 50000 \
    --steps-per-frame 200 --timestep 0.001 --equilibration-steps 100000 --seed 2 --platform Reference --no-progress
python scripts/make_c7ax_start.py data/ala2-vacuum-c7ax-start.pdb --seed 1
nice -n 19 python -m openmm_bg.commands.simulate ala2-vacuum --start data/ala2-vacuum-c7ax-start.pdb \
    -o runs/issue7/ala2-c7ax-20k.dcd --frames 20000 --steps-per-frame 200 --timestep 0.001 --equilibration-steps 10000 \
    --seed 3 --platform Reference --no-progress
# ... and the C7ax run extended to 10 ns (it resumes and appends)
nice -n 19 python -m openmm_bg.commands.simulate ala2-vacuum --start data/ala2-vacuum-c7ax-start.pdb \
    -o runs/issue7/ala2-c7ax-20k.dcd --frames 50000 --steps-per-frame 200 --timestep 0.001 --equilibration-steps 10000 \
    --seed 3 --platform Reference --no-progress
# Second, independent runs from each structure, one frame per 0.5 ps (about 5 + 3 min on one core).
nice -n 19 python -m openmm_bg.commands.simulate ala2-vacuum -o runs/issue7b/ala2-c7eq-b.dcd --frames 40000 \
    --steps-per-frame 500 --timestep 0.001 --equilibration-steps 100000 --seed 4 --platform Reference --no-progress
nice -n 19 python -m openmm_bg.commands.simulate ala2-vacuum --start data/ala2-vacuum-c7ax-start.pdb \
    -o runs/issue7b/ala2-c7ax-b.dcd --frames 20000 --steps-per-frame 500 --timestep 0.001 --equilibration-steps 10000 \
    --seed 5 --platform Reference --no-progress
# MD held in the phi > 0 basin by a flat-bottom restraint on phi (about 4 min on one core).
python scripts/make_c7ax_basin_data.py runs/issue7b/ala2-c7ax-basin.dcd --frames 20000 --steps-per-frame 1000 \
    --timestep 0.001 --equilibration-steps 10000 --centre 63 --half-width 57 --k 1000 --seed 6
cp runs/issue7/ala2-c7eq-50k.dcd data/ala2-vacuum-300K-c7eq.dcd
cp runs/issue7/ala2-c7ax-20k.dcd data/ala2-vacuum-300K-c7ax.dcd
cp runs/issue7b/ala2-c7eq-b.dcd data/ala2-vacuum-300K-c7eq-2.dcd
cp runs/issue7b/ala2-c7ax-b.dcd data/ala2-vacuum-300K-c7ax-2.dcd
cp runs/issue7b/ala2-c7ax-basin.dcd data/ala2-vacuum-300K-c7ax-basin.dcd
python scripts/write_data_readme.py
