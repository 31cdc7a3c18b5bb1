#!/bin/bash
# Regenerate the bundled MD trajectories (data/ala2-vacuum-300K-md.*, data/dimer-wca-closed.*).
# Runs on one core under nice; about 4 min + 30 s on the shared 2-core development machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export OPENMM_CPU_THREADS=1
mkdir -p runs/issue5/md
nice -n 19 python -m openmm_bg.commands.simulate ala2-vacuum -o runs/issue5/md/ala2-vacuum-300K-md.dcd \
    --frames 10000 --steps-per-frame 1000 --timestep 0.001 --equilibration-steps 100000 --seed 1 \
    --platform Reference --checkpoint-every 2000 --no-progress
nice -n 19 python -m openmm_bg.commands.simulate dimer-wca -o runs/issue5/md/dimer-wca-closed.dcd \
    --frames 1000 --steps-per-frame 100 --timestep 0.005 --equilibration-steps 2000 --seed 1 --platform CPU --no-progress
cp runs/issue5/md/ala2-vacuum-300K-md.dcd runs/issue5/md/ala2-vacuum-300K-md.pdb \
   runs/issue5/md/dimer-wca-closed.dcd runs/issue5/md/dimer-wca-closed.pdb data/
python scripts/write_data_readme.py
