"""Write data/trpzip2-implicit.pdb: the trpzip2 peptide from openmmtools' bundled files, without water and ions.

openmmtools ships trpzip2 (first NMR model of 1LE1, solvated) as an old-format Amber
prmtop (no %FLAG sections, which neither OpenMM nor mdtraj reads) and a crd file.
This script reads the atom names, residue labels and residue pointers from the
prmtop's fixed-width sections, the coordinates from the crd, keeps the 12 peptide
residues, and writes a PDB whose hydrogens carry Amber names (matched by amber14).

    python scripts/make_trpzip2_pdb.py data/trpzip2-implicit.pdb
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import openmm.app as app
import openmm.unit as unit
import openmmtools

AMINO_ACIDS = {"SER", "TRP", "THR", "GLU", "ASN", "GLY", "LYS"}


def read_old_prmtop(path: str) -> tuple[list[str], list[str], list[int]]:
    """Atom names, residue labels and 0-based first-atom index of each residue."""
    lines = open(path).read().split("\n")

    def ints(block):
        return [int(line[i : i + 6]) for line in block for i in range(0, len(line.rstrip()), 6)]

    pointers = ints(lines[1:4])
    n_atoms, n_types, n_residues = pointers[0], pointers[1], pointers[11]
    position = 4

    def take(n, per_line):
        nonlocal position
        n_lines = -(-n // per_line)
        block = lines[position : position + n_lines]
        position += n_lines
        return block

    names = [line[i : i + 4].strip() for line in take(n_atoms, 20) for i in range(0, 80, 4)][:n_atoms]
    for n, per_line in ((n_atoms, 5), (n_atoms, 5), (n_atoms, 12), (n_atoms, 12), (n_types * n_types, 12)):
        take(n, per_line)  # charges, masses, atom types, exclusion counts, nonbonded index
    labels = [line[i : i + 4].strip() for line in take(n_residues, 20) for i in range(0, 80, 4)][:n_residues]
    first = [p - 1 for p in ints(take(n_residues, 12))[:n_residues]]
    return names, labels, first


def read_crd(path: str, n_atoms: int) -> np.ndarray:
    """Coordinates in nm from an Amber crd (title, atom count, 6F12.7 in Angstrom)."""
    lines = open(path).read().split("\n")[2:]
    values = [float(line[i : i + 12]) for line in lines for i in range(0, len(line.rstrip()), 12)]
    return np.array(values[: 3 * n_atoms]).reshape(n_atoms, 3) / 10.0


def main(out: str) -> None:
    folder = os.path.join(os.path.dirname(openmmtools.__file__), "data", "trpzip2-explicit")
    names, labels, first = read_old_prmtop(os.path.join(folder, "trpzip2.prmtop"))
    xyz = read_crd(os.path.join(folder, "trpzip2.crd"), len(names))
    bounds = first + [len(names)]
    topology = app.Topology()
    chain = topology.addChain("A")
    keep = []
    for k, label in enumerate(labels):
        if label not in AMINO_ACIDS:
            continue
        residue = topology.addResidue(label, chain, id=str(k + 1))
        for index in range(bounds[k], bounds[k + 1]):
            name = names[index]
            topology.addAtom(name, app.Element.getBySymbol(name[0]), residue)
            keep.append(index)
    topology.createStandardBonds()
    residues = [r.name for r in topology.residues()]
    if residues != ["SER", "TRP", "THR", "TRP", "GLU", "ASN", "GLY", "LYS", "TRP", "THR", "TRP", "LYS"]:
        raise RuntimeError(f"unexpected peptide sequence {residues}")
    positions = xyz[keep] - xyz[keep].mean(axis=0) + 2.0
    with open(out, "w") as handle:
        app.PDBFile.writeFile(topology, positions * unit.nanometer, handle)
    print(f"wrote {out}: {topology.getNumAtoms()} atoms, {topology.getNumResidues()} residues")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="data/trpzip2-implicit.pdb", help="PDB file to write")
    main(parser.parse_args().out)
