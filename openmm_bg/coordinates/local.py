r"""Internal coordinates of part of a molecule, with the rest held fixed.

A local move regenerates some atoms (a side chain, a terminal segment, a methyl group)
while every other atom stays exactly where it is.  The moved atoms are placed one by
one, each from three reference atoms that are fixed or already placed, by its bond
length ``r``, angle ``theta`` and torsion ``phi`` (the rows of the molecule's z-matrix,
:func:`~openmm_bg.coordinates.build_zmatrix`).  Given the fixed atoms this is a bijection
between the moved atoms' Cartesian positions and their internal coordinates, with

.. math:: \log\left|\det \frac{\partial x_S}{\partial q_S}\right| = \sum_{i \in S} \left(2 \log r_i + \log \sin \theta_i\right),

so a density over ``q_S`` is a density over the moved atoms' positions *conditional on
the fixed ones*, which is what an exact Metropolis-Hastings move needs (Noé, Olsson,
Köhler & Wu, Science 365, eaaw1147 (2019), for the internal-coordinate Jacobian).

**Which atoms may move** (:func:`local_rows` checks it).  Moving an atom must not
stretch a covalent bond to a fixed atom, or the proposal is rejected every time: the
moved atoms must form fragments that each hang from the fixed atoms by exactly one
covalent bond, and that bond must be the fragment atom's z-matrix bond.  Side chains
beyond ``CA`` (with their hydrogens), a chain's terminal segment beyond one backbone
bond, and terminal groups qualify; part of a ring (proline, aromatic rings) or a
segment in the middle of a chain (two bonds to fixed atoms) does not.  The first three
atoms of the z-matrix fix the molecule's frame and cannot move.  Constraints are not
supported: a constrained bond in the moved part is an error.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from ..topology import as_topology
from .zmatrix import build_zmatrix, validate_zmatrix

__all__ = ["local_rows", "LocalInternalCoordinates", "select_atoms"]

#: a hydrogen of the rows must be lighter than this in the System (Da; repartitioned hydrogens reach 4)
HYDROGEN_MASS_MAX = 5.0
#: a heavy atom of the rows must be at least this heavy (Da): repartitioning to 4 Da leaves a methyl
#: carbon at about 3 Da, an ordinary hydrogen has 1.008
HEAVY_MASS_MIN = 1.5


def select_atoms(topology: Any, selection: str | Sequence[int]) -> np.ndarray:
    """Atom indices of an mdtraj selection string (or a list of indices), sorted; ``ValueError`` if empty or invalid."""
    top = as_topology(topology)
    if isinstance(selection, str):
        try:
            atoms = top.select(selection)
        except Exception as error:  # mdtraj raises its own parse errors
            raise ValueError(f"cannot parse the atom selection {selection!r}: {' '.join(str(error).split())}") from None
    else:
        atoms = np.asarray(list(selection))
        if atoms.size and (atoms.dtype.kind not in "iu" or atoms.min() < 0 or atoms.max() >= top.n_atoms):
            raise ValueError(f"atom indices must be integers in [0, {top.n_atoms}), got {selection!r}")
    atoms = np.unique(np.asarray(atoms, dtype=np.int64))
    if atoms.size == 0:
        raise ValueError(f"the selection {selection!r} matches no atoms")
    return atoms


def local_rows(topology: Any, moved: Sequence[int], zmatrix: Any = None, system: Any = None) -> np.ndarray:
    """The z-matrix rows that place ``moved`` atoms from fixed or earlier moved ones, checked.

    Parameters
    ----------
    topology : mdtraj.Topology or openmm.app.Topology
    moved : sequence of int
        The atoms to regenerate.
    zmatrix : array (n_atoms, 4), optional
        Default: :func:`~openmm_bg.coordinates.build_zmatrix` of the topology.
    system : openmm.System, optional
        Checked for constraints on the moved atoms.

    Returns
    -------
    ndarray, shape (n_moved, 4)
        Rows ``(atom, bond, angle, torsion)`` in placement order.

    Raises
    ------
    ValueError
        An empty selection, a moved atom among the three that fix the frame, a fragment
        bonded to the fixed atoms by more or fewer than one bond (a ring or a mid-chain
        segment), or a constrained bond on a moved atom; the message names the atoms.
    """
    top = as_topology(topology)
    zm = validate_zmatrix(build_zmatrix(top) if zmatrix is None else zmatrix, top.n_atoms)
    moved_set = {int(a) for a in moved}
    if not moved_set:
        raise ValueError("the selection matches no atoms")
    if max(moved_set) >= top.n_atoms or min(moved_set) < 0:
        raise ValueError(f"moved atoms must lie in [0, {top.n_atoms}), got {sorted(moved_set)[:5]}...")
    describe = lambda i: f"{i} ({top.atom(i)})"
    frame = [int(a) for a in zm[:3, 0]]
    for a in frame:
        if a in moved_set:
            raise ValueError(f"atom {describe(a)} is one of the three z-matrix atoms that fix the molecule's frame; it cannot move locally")
    rows = np.array([row for row in zm if int(row[0]) in moved_set], dtype=np.int64)
    bond_partner = {int(r[0]): int(r[1]) for r in rows}
    # the bond graph: each connected fragment of moved atoms must hang from the fixed atoms by one bond
    neighbours: dict[int, list[int]] = {i: [] for i in moved_set}
    crossing: list[tuple[int, int]] = []
    for bond in top.bonds:
        i, j = bond[0].index, bond[1].index
        if i in moved_set and j in moved_set:
            neighbours[i].append(j)
            neighbours[j].append(i)
        elif i in moved_set or j in moved_set:
            crossing.append((i, j) if i in moved_set else (j, i))
    seen: set[int] = set()
    for start in sorted(moved_set):
        if start in seen:
            continue
        fragment, stack = set(), [start]
        while stack:
            a = stack.pop()
            if a in fragment:
                continue
            fragment.add(a)
            stack.extend(neighbours[a])
        seen |= fragment
        bonds_out = [(i, j) for i, j in crossing if i in fragment]
        if not bonds_out:
            raise ValueError(f"the moved atoms {sorted(fragment)[:6]} are not bonded to any fixed atom: a local move regenerates a "
                             "fragment hanging from the rest by one bond (select a side chain or a terminal segment)")
        if len(bonds_out) > 1:
            cut = ", ".join(f"{describe(i)}-{describe(j)}" for i, j in bonds_out[:4])
            raise ValueError(f"the selection cuts a ring or the middle of a chain: its fragment with atom {describe(start)} is bonded to "
                             f"fixed atoms by {len(bonds_out)} bonds ({cut}); a local move needs exactly one (extend or shrink the selection)")
        (root, anchor), = bonds_out
        if bond_partner[root] != anchor:
            raise ValueError(f"atom {describe(root)} hangs from fixed atom {describe(anchor)}, but the z-matrix places it from atom "
                             f"{describe(bond_partner[root])}; give a z-matrix that places the fragment from its anchor")
    if system is not None:
        for k in range(system.getNumConstraints()):
            i, j, _ = system.getConstraintParameters(k)
            if i in moved_set or j in moved_set:
                raise ValueError(f"the selection holds the constrained bond {describe(i)}-{describe(j)}; local moves need an unconstrained System")
    return rows


class LocalInternalCoordinates(torch.nn.Module):
    """Bond, angle and torsion of each moved atom, given the fixed atoms; see the module docstring.

    Parameters
    ----------
    rows : array (n_moved, 4)
        From :func:`local_rows`.
    n_atoms : int
        Atoms of the whole molecule.

    Attributes
    ----------
    dim : int
        ``3 * n_moved``: laid out as all bonds (nm), then all angles, then all torsions (radians).
    circular : BoolTensor (dim,)
        True on the torsions.
    """

    def __init__(self, rows: Any, n_atoms: int):
        super().__init__()
        rows = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        if rows.ndim != 2 or rows.shape[1] != 4 or rows.shape[0] == 0 or (rows[:, 1:] < 0).any():
            raise ValueError(f"rows must have shape (n_moved, 4) with three reference atoms each, got {tuple(rows.shape)}")
        self.register_buffer("rows", rows)
        self.n_atoms = int(n_atoms)
        n = rows.shape[0]
        self.dim = 3 * n
        self.register_buffer("circular", torch.arange(self.dim) >= 2 * n)
        # which atoms of the rows are hydrogens (set by local_generator_from_data from the topology): a
        # move checks them against the System's light particles, so a generator of another molecule
        # with the same number of atoms is refused
        self.register_buffer("hydrogens", torch.zeros(n, 4, dtype=torch.bool))
        self.register_buffer("hydrogens_known", torch.zeros((), dtype=torch.bool))

    def record_hydrogens(self, topology: Any) -> None:
        """Remember which atoms of the rows are hydrogens in ``topology``."""
        top = as_topology(topology)
        is_h = [a.element is not None and a.element.symbol in ("H", "D") for a in top.atoms]
        self.hydrogens.copy_(torch.as_tensor([[is_h[int(i)] for i in row] for row in self.rows.tolist()]))
        self.hydrogens_known.fill_(True)

    def check_system(self, system: Any) -> None:
        """``ValueError`` unless ``system`` has the molecule's atom count and, where known, masses that fit
        the rows' elements: every hydrogen under 5 Da and every heavy atom at 1.5 Da or more.

        The bounds allow hydrogen-mass repartitioning (hydrogens up to 4 Da, which can leave a
        methyl carbon near 3 Da), and still catch a hydrogen where the System has a heavy atom
        or a heavy atom where it has an ordinary hydrogen.
        """
        n = system.getNumParticles()
        if n != self.n_atoms:
            raise ValueError(f"the local generator was built for a molecule of {self.n_atoms} atoms, the System has {n}")
        if not bool(self.hydrogens_known):
            return
        import openmm.unit as unit

        mass = torch.as_tensor([[system.getParticleMass(int(i)).value_in_unit(unit.dalton) for i in row] for row in self.rows.tolist()])
        wrong = torch.where(self.hydrogens, mass >= HYDROGEN_MASS_MAX, mass < HEAVY_MASS_MIN)
        if wrong.any():
            row, col = (int(v) for v in wrong.nonzero()[0])
            atom = int(self.rows[row, col])
            what = "a hydrogen" if bool(self.hydrogens[row, col]) else "a heavy atom"
            raise ValueError(f"the local generator was built for another molecule: atom {atom} is {what} in its rows, "
                             f"but has {float(mass[row, col]):.3f} Da in the System")

    @property
    def moved(self) -> Tensor:
        """Indices of the moved atoms, in placement order."""
        return self.rows[:, 0]

    def _positions(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[1:] != (self.n_atoms, 3):
            raise ValueError(f"positions must have shape (batch, {self.n_atoms}, 3) in nm, got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("positions hold NaN or infinite values")
        return x

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Internal coordinates of the moved atoms, shape (batch, dim), and ``log|det dq/dx_S|`` (batch,)."""
        x = self._positions(x)
        a, b, c, d = (self.rows[:, k] for k in range(4))
        xi, xb, xc, xd = x[:, a], x[:, b], x[:, c], x[:, d]
        v1, v2 = xi - xb, xc - xb
        r = torch.linalg.vector_norm(v1, dim=-1)
        theta = torch.atan2(torch.linalg.vector_norm(torch.linalg.cross(v1, v2), dim=-1), (v1 * v2).sum(-1))
        b0, b1, b2 = xc - xd, xb - xc, xi - xb
        n1, n2 = torch.linalg.cross(b0, b1), torch.linalg.cross(b1, b2)
        phi = torch.atan2(torch.linalg.vector_norm(b1, dim=-1) * (b0 * n2).sum(-1), (n1 * n2).sum(-1))
        return torch.cat([r, theta, phi], dim=1), -(2 * torch.log(r) + torch.log(torch.sin(theta))).sum(dim=1)

    def in_domain(self, q: Tensor) -> Tensor:
        """Rows that :meth:`place` maps to positions: finite, bonds > 0, angles in [0, pi]."""
        n = self.rows.shape[0]
        r, theta = q[:, :n], q[:, n : 2 * n]
        return torch.isfinite(q).all(dim=1) & (r > 0).all(dim=1) & ((theta >= 0) & (theta <= math.pi)).all(dim=1)

    def place(self, q: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Positions with the moved atoms placed at ``q`` and every other atom as in ``x``.

        Parameters
        ----------
        q : Tensor (batch, dim)
            In the domain (:meth:`in_domain`); torsions may take any real value.
        x : Tensor (batch, n_atoms, 3) or (n_atoms, 3), nm
            Supplies the fixed atoms (broadcast over the batch when 2-D).

        Returns
        -------
        positions : Tensor (batch, n_atoms, 3)
        ladj : Tensor (batch,)
            ``log|det dx_S/dq|``.
        """
        if x.ndim == 2:
            x = x.expand(q.shape[0], *x.shape)
        pos = self._positions(x).clone()
        if q.ndim != 2 or q.shape != (pos.shape[0], self.dim):
            raise ValueError(f"internal coordinates must have shape ({pos.shape[0]}, {self.dim}), got {tuple(q.shape)}")
        if not self.in_domain(q).all():
            raise ValueError("internal coordinates outside the domain (bonds > 0, angles in [0, pi]); mask them with in_domain() first")
        n = self.rows.shape[0]
        for k in range(n):
            a, b, c, d = (int(v) for v in self.rows[k])
            r, theta, phi = q[:, k, None], q[:, n + k, None], q[:, 2 * n + k, None]
            xb, xc, xd = pos[:, b], pos[:, c], pos[:, d]
            e1 = xb - xc
            e1 = e1 / torch.linalg.vector_norm(e1, dim=-1, keepdim=True)
            normal = torch.linalg.cross(xc - xd, e1)
            e3 = normal / torch.linalg.vector_norm(normal, dim=-1, keepdim=True)
            e2 = torch.linalg.cross(e3, e1)
            pos[:, a] = xb + r * (-torch.cos(theta) * e1 + torch.sin(theta) * (torch.cos(phi) * e2 + torch.sin(phi) * e3))
        ladj = (2 * torch.log(q[:, :n]) + torch.log(torch.sin(q[:, n : 2 * n]))).sum(dim=1)
        return pos, ladj
