"""Z-matrices: the order in which atoms are placed, and the atoms they are placed from.

A z-matrix is an integer array of shape ``(n_atoms, 4)``.  Row ``k`` reads
``(atom, bond_partner, angle_partner, torsion_partner)``: ``atom`` is placed at
the distance from ``bond_partner``, the angle ``atom - bond_partner - angle_partner``
and the torsion ``atom - bond_partner - angle_partner - torsion_partner``.  Every
partner must be placed in an earlier row.  The first three rows lack the
references that do not exist yet and hold ``-1`` there::

    row 0: (a0, -1, -1, -1)
    row 1: (a1, b1, -1, -1)
    row 2: (a2, b2, c2, -1)
"""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np

from ..topology import as_topology

__all__ = ["build_zmatrix", "validate_zmatrix", "MAIN_CHAIN_ATOM_NAMES"]


#: Atom names that form the main chain of protein and nucleic-acid residues.
#: They are placed first, so that the backbone torsions (phi, psi, ...) are
#: coordinates of their own and side chains hang off a fully placed backbone.
MAIN_CHAIN_ATOM_NAMES: dict[str, frozenset[str]] = {
    "protein": frozenset({"N", "CA", "C"}),
    "nucleic": frozenset({"P", "O5'", "C5'", "C4'", "C3'", "O3'"}),
}

# placement classes: lower is placed earlier
_MAIN_CHAIN, _HEAVY, _HYDROGEN = 0, 1, 2


def _atom_class(atom) -> int:
    element = atom.element
    if element is not None and getattr(element, "symbol", None) in ("H", "D"):
        return _HYDROGEN
    residue = atom.residue
    if residue.is_protein and atom.name in MAIN_CHAIN_ATOM_NAMES["protein"]:
        return _MAIN_CHAIN
    if residue.is_nucleic and atom.name in MAIN_CHAIN_ATOM_NAMES["nucleic"]:
        return _MAIN_CHAIN
    return _HEAVY


def _components(neighbours: list[list[int]]) -> list[list[int]]:
    seen = np.zeros(len(neighbours), dtype=bool)
    components = []
    for start in range(len(neighbours)):
        if seen[start]:
            continue
        seen[start] = True
        stack, members = [start], []
        while stack:
            atom = stack.pop()
            members.append(atom)
            for other in neighbours[atom]:
                if not seen[other]:
                    seen[other] = True
                    stack.append(other)
        components.append(sorted(members))
    return components


def build_zmatrix(topology: Any) -> np.ndarray:
    """Build a z-matrix that follows the bond graph of one connected molecule.

    Atoms are placed in this order: main-chain atoms of protein and nucleic
    residues (``N, CA, C`` and ``P, O5', C5', C4', C3', O3'``) along the chain,
    then the other heavy atoms, then hydrogens; within a class, by residue
    and atom index.  Every atom is placed next to an atom already placed, so
    each bond partner is a chemical bond.  Bond and angle partners prefer
    heavy atoms placed early, so a hydrogen is always placed from its heavy
    atom.  The torsion partner is, when possible, another atom bonded to the
    bond partner (an improper torsion, nearly constant for sp3 branches and
    planar groups, which fixes chirality); otherwise a neighbour of the angle
    partner (a proper torsion such as phi or psi).

    Parameters
    ----------
    topology : mdtraj.Topology, openmm.app.Topology, or path
        One connected molecule with at least three atoms and its bonds.

    Returns
    -------
    zmatrix : numpy.ndarray, shape (n_atoms, 4), dtype int64
        Rows ``(atom, bond_partner, angle_partner, torsion_partner)`` in
        placement order, ``-1`` where the first three rows lack a reference.

    Raises
    ------
    ValueError
        If the topology has fewer than three atoms or is not connected (for
        example a solute with its solvent): strip the other molecules, or pass
        a z-matrix of your own, whose references may cross molecules, to
        :func:`validate_zmatrix`.
    """
    top = as_topology(topology)
    n_atoms = top.n_atoms
    if n_atoms < 3:
        raise ValueError(f"a z-matrix needs at least 3 atoms, the topology has {n_atoms}")
    atoms = list(top.atoms)
    neighbours: list[list[int]] = [[] for _ in range(n_atoms)]
    for bond in top.bonds:
        i, j = bond[0].index, bond[1].index
        if i != j and j not in neighbours[i]:
            neighbours[i].append(j)
            neighbours[j].append(i)
    components = _components(neighbours)
    if len(components) > 1:
        sizes = [len(c) for c in components]
        firsts = [f"{atoms[c[0]]} (atom {c[0]})" for c in components[:5]]
        hint = " The topology has no bonds at all; load it from a format that defines them." if top.n_bonds == 0 else ""
        raise ValueError(
            f"build_zmatrix needs one connected molecule, but the bond graph has {len(components)} connected "
            f"components of sizes {sizes[:10]}{'...' if len(sizes) > 10 else ''}, starting at {', '.join(firsts)}."
            f"{hint} Strip solvent and ions (e.g. mdtraj.Topology.subset), or pass a z-matrix of your own."
        )

    klass = [_atom_class(a) for a in atoms]
    keys = [(klass[a.index], a.residue.index, a.index) for a in atoms]
    rank = np.full(n_atoms, -1, dtype=np.int64)
    order: list[int] = []
    root = min((k for k in keys if k[0] != _HYDROGEN), default=min(keys))[2]
    frontier = [keys[root]]
    queued = {root}
    while frontier:
        atom = heapq.heappop(frontier)[2]
        rank[atom] = len(order)
        order.append(atom)
        for other in neighbours[atom]:
            if other not in queued:
                queued.add(other)
                heapq.heappush(frontier, keys[other])

    def placed_neighbours(atom: int, before: int, exclude: tuple[int, ...]) -> list[int]:
        found = [n for n in neighbours[atom] if 0 <= rank[n] < before and n not in exclude]
        return sorted(found, key=lambda n: (klass[n] == _HYDROGEN, rank[n]))

    def earliest_other(before: int, exclude: tuple[int, ...]) -> int:
        return next(a for a in order[:before] if a not in exclude)

    zmatrix = np.full((n_atoms, 4), -1, dtype=np.int64)
    for k, atom in enumerate(order):
        zmatrix[k, 0] = atom
        if k == 0:
            continue
        bond = placed_neighbours(atom, k, ())[0]
        zmatrix[k, 1] = bond
        if k == 1:
            continue
        candidates = placed_neighbours(bond, k, (atom,))
        angle = candidates[0] if candidates else earliest_other(k, (atom, bond))
        zmatrix[k, 2] = angle
        if k == 2:
            continue
        candidates = placed_neighbours(bond, k, (atom, angle)) or placed_neighbours(angle, k, (atom, bond))
        zmatrix[k, 3] = candidates[0] if candidates else earliest_other(k, (atom, bond, angle))
    return zmatrix


def validate_zmatrix(zmatrix: Any, n_atoms: int | None = None) -> np.ndarray:
    """Check a z-matrix and return it as a canonical integer array.

    Parameters
    ----------
    zmatrix : array_like of int, shape (n_atoms, 4)
        Rows ``(atom, bond_partner, angle_partner, torsion_partner)`` in
        placement order; row 0 holds ``-1`` for all three partners, row 1 for
        the angle and torsion partners, row 2 for the torsion partner.
    n_atoms : int, optional
        Number of atoms of the molecule; by default the number of rows.

    Returns
    -------
    zmatrix : numpy.ndarray, shape (n_atoms, 4), dtype int64

    Raises
    ------
    TypeError
        If the entries are not integers.
    ValueError
        If the shape is wrong, an atom index is unknown, an atom is missing or
        placed twice, a partner is placed later than the atom it places, or
        the atoms of a row are not distinct.
    """
    array = np.asarray(zmatrix)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise TypeError(f"a z-matrix must hold integers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"a z-matrix must have shape (n_atoms, 4), got {array.shape}")
    n_rows = array.shape[0]
    if n_atoms is None:
        n_atoms = n_rows
    if n_atoms < 3:
        raise ValueError(f"a z-matrix needs at least 3 atoms, got {n_atoms}")
    placed = array[:, 0]
    unknown = placed[(placed < 0) | (placed >= n_atoms)]
    if unknown.size:
        raise ValueError(f"unknown atom index {int(unknown[0])} in column 0; atom indices run from 0 to {n_atoms - 1}")
    counts = np.bincount(placed, minlength=n_atoms)
    missing = np.flatnonzero(counts == 0).tolist()
    missing_text = f"atoms {missing[:10]}{'...' if len(missing) > 10 else ''} are missing from column 0"
    if (counts > 1).any():
        atom = int(np.flatnonzero(counts > 1)[0])
        rows = np.flatnonzero(placed == atom).tolist()
        raise ValueError(f"atom {atom} is placed more than once, in rows {rows}" + (f"; {missing_text}" if missing else ""))
    if n_rows != n_atoms:
        raise ValueError(f"a z-matrix for {n_atoms} atoms must have {n_atoms} rows, got {n_rows}: {missing_text}")

    row_of = np.empty(n_atoms, dtype=np.int64)
    row_of[placed] = np.arange(n_atoms)
    for k, (atom, *refs) in enumerate(array.tolist()):
        n_refs = min(k, 3)
        expected = refs[:n_refs]
        if any(r == -1 for r in expected) or any(r != -1 for r in refs[n_refs:]):
            raise ValueError(
                f"row {k} (atom {atom}) must name {n_refs} partner(s) followed by {3 - n_refs} times -1, got {refs}"
            )
        for ref in expected:
            if not 0 <= ref < n_atoms:
                raise ValueError(f"row {k} (atom {atom}) references unknown atom index {ref}")
            if row_of[ref] >= k:
                raise ValueError(
                    f"row {k} (atom {atom}) references atom {ref}, which is placed later (row {row_of[ref]}); "
                    "every partner must be placed before the atom it places"
                )
        if len(set([atom, *expected])) != n_refs + 1:
            raise ValueError(f"row {k}: atom {atom} and its partners {expected} must be distinct atoms")
    return array
