"""Cartesian <-> internal coordinates as a bijection with an analytic log-determinant.

Layout of the flat internal-coordinate vector (``forward`` output, ``inverse`` input)::

    [ bonds (free only) | angles | torsions | rigid body (6, optional) ]

* bonds, nm: the distance of every atom but the first to its bond partner, in
  z-matrix row order, without the bonds that the ``System`` constrains;
* angles, radians in [0, pi]: row 2 onwards;
* torsions, radians in [-pi, pi], periodic: row 3 onwards;
* rigid body: the position of the first atom (3 values, nm), then the
  orientation as the polar angle ``theta`` in [0, pi] and the azimuth ``phi``
  of the first bond, and the rotation ``psi`` of the third atom about it
  (both periodic).  Together these are Euler angles, whose measure is
  ``sin(theta) dtheta dphi dpsi``.

Each atom from row 1 on is placed in spherical coordinates (bond, angle,
torsion) around its bond partner, in a frame made of atoms placed before it.
The map is therefore block-triangular and

    log |det dx/dq| = sum_k 2 log r_k + sum_k log sin(angle_k) [+ log sin(theta)]

exactly; the ``theta`` term belongs to the rigid body and is left out when the
rigid body is removed (see :class:`InternalCoordinateTransform`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from ..flows.base import Bijection, check_flat
from .constraints import constraints_from_system, match_constraints
from ..topology import as_topology
from .zmatrix import build_zmatrix, validate_zmatrix

__all__ = ["InternalCoordinateTransform", "CLAMP_EVENTS"]

#: Names of the degeneracies that are clamped and counted in ``clamp_counts``.
CLAMP_EVENTS = ("bond", "angle", "orientation", "frame")


def _levels(zmatrix: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Rows >= 3 grouped so that each group depends only on earlier groups."""
    level = np.zeros(int(zmatrix[:, 0].max()) + 1, dtype=np.int64)
    row_level = np.zeros(zmatrix.shape[0], dtype=np.int64)
    for k in range(3, zmatrix.shape[0]):
        atom, b, a, d = zmatrix[k]
        row_level[k] = 1 + max(level[b], level[a], level[d])
        level[atom] = row_level[k]
    rows = np.arange(3, zmatrix.shape[0])
    order = np.argsort(row_level[3:], kind="stable")
    sizes = np.bincount(row_level[3:][order])[1:].tolist() if rows.size else []
    return rows[order] - 3, [s for s in sizes if s > 0]


def _unit_frame(theta: Tensor, phi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Radial, polar and azimuthal unit vectors at (theta, phi), each shape (batch, 3)."""
    st, ct, sp, cp = torch.sin(theta), torch.cos(theta), torch.sin(phi), torch.cos(phi)
    u = torch.stack([st * cp, st * sp, ct], dim=-1)
    e_theta = torch.stack([ct * cp, ct * sp, -st], dim=-1)
    e_phi = torch.stack([-sp, cp, torch.zeros_like(sp)], dim=-1)
    return u, e_theta, e_phi


class InternalCoordinateTransform(Bijection):
    """Bijection between Cartesian positions and bonds, angles, torsions (and rigid body).

    ``forward`` maps positions, shape ``(batch, n_atoms, 3)`` or
    ``(batch, 3 * n_atoms)`` in nm, to the flat internal coordinates of shape
    ``(batch, dim)`` laid out as in the module docstring; ``inverse`` maps them
    back to positions of shape ``(batch, n_atoms, 3)``.

    **Rigid body kept** (default).  ``dim = 3 * n_atoms - n_constraints``.
    Without constraints the map is a bijection of R^{3N} (up to sets of measure
    zero), the Jacobian is square and ``ladj`` is the exact change of variables.

    **Rigid body removed** (``remove_rigid_body=True``).  ``dim = 3 * n_atoms - 6
    - n_constraints``.  ``forward`` drops the six rigid-body coordinates;
    ``inverse`` puts the first atom at the origin, the second on the +z axis and
    the third in the xz-plane with x > 0.  The ladj is that of the full map
    less the Euler-angle measure ``log sin(theta)``::

        ladj_removed = log |det dx/d(q, t, theta, phi, psi)| - log sin(theta)

    which does not depend on the pose.  A density ``p(q)`` over the internal
    coordinates then defines the Cartesian density
    ``p(x) = p(q) exp(ladj_forward) / (8 pi^2 V)``: the molecule's pose is
    uniform over rotations and over a volume ``V`` of translations.  This is
    right for energies invariant under rigid motion (vacuum, implicit
    solvent); importance weights only change by the constant ``log(8 pi^2 V)``.

    **Constraints.**  Bonds fixed by a constraint are removed from the
    coordinates and put back at their constrained length by ``inverse``.  The
    ladj is that of the full square map at the constrained lengths, so the
    density is defined on the constrained manifold with respect to
    ``delta(r - r0) dr`` (the stiff-spring limit).  ``forward`` checks that the
    constrained lengths hold to within ``constraint_tolerance`` nm.

    **Degeneracy.**  A bond shorter than ``eps`` nm, or an angle whose sine is
    below ``eps``, is clamped inside the log-determinant and counted in
    :attr:`clamp_counts`.  ``forward`` raises a ``ValueError`` when an atom
    cannot be represented because its reference atoms are collinear or
    coincide; ``inverse`` clamps such frames (no NaN) and counts them as
    ``"frame"``.  Non-finite input and, in ``inverse``, coordinates outside
    the domain (bond < 0, angle or theta outside [0, pi]) raise a
    ``ValueError``; :meth:`in_domain` finds them beforehand.

    Parameters
    ----------
    zmatrix : array_like of int, shape (n_atoms, 4)
        See :func:`~openmm_bg.coordinates.validate_zmatrix`.
    constraints : mapping, optional
        Constrained atom pair ``(i, j)`` -> distance in nm.  Each pair must be
        a bond of the z-matrix.
    remove_rigid_body : bool
        Drop the six rigid-body coordinates (see above).
    eps : float
        Clamping threshold for bonds (nm), sines of angles and frames.
    constraint_tolerance : float or None
        Largest deviation (nm) of a constrained bond accepted by ``forward``;
        ``None`` projects any configuration onto the constraints silently.

    Attributes
    ----------
    dim : int
        Number of internal coordinates.
    bond_indices, angle_indices, torsion_indices, rigid_indices : LongTensor
        Positions of each kind of coordinate in the flat vector.
    circular : BoolTensor, shape (dim,)
        True for periodic dimensions (torsions and the rigid ``phi``, ``psi``).
    bond_atoms, angle_atoms, torsion_atoms : LongTensor, shape (n, 2), (n, 3), (n, 4)
        Atoms defining each free bond, angle and torsion.
    constrained_atoms : LongTensor, shape (n_constraints, 2)
    constrained_lengths : Tensor, shape (n_constraints,), float64, nm
    clamp_counts : dict of str to int
        Running count of clamped events per kind in :data:`CLAMP_EVENTS`.
    """

    def __init__(
        self,
        zmatrix: Any,
        *,
        constraints: Mapping[tuple[int, int], float] | None = None,
        remove_rigid_body: bool = False,
        eps: float = 1e-6,
        constraint_tolerance: float | None = 1e-4,
    ):
        super().__init__()
        zm = validate_zmatrix(zmatrix)
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        n = zm.shape[0]
        self.n_atoms = n
        self.remove_rigid_body = bool(remove_rigid_body)
        self.eps = float(eps)
        self.constraint_tolerance = None if constraint_tolerance is None else float(constraint_tolerance)
        self.clamp_counts = {name: 0 for name in CLAMP_EVENTS}

        constrained_rows, lengths = match_constraints(zm, constraints or {})
        free_rows = np.setdiff1d(np.arange(1, n), constrained_rows)
        n_bonds, n_angles, n_torsions = len(free_rows), n - 2, n - 3
        n_rigid = 0 if self.remove_rigid_body else 6
        self.dim = n_bonds + n_angles + n_torsions + n_rigid

        def buffer(name: str, value: Any, dtype: torch.dtype = torch.long) -> None:
            self.register_buffer(name, torch.as_tensor(np.asarray(value), dtype=dtype), persistent=False)

        buffer("zmatrix", zm)
        buffer("_atom", zm[:, 0])
        buffer("_bond_partner", zm[1:, 1])
        buffer("_angle_partner", zm[2:, 2])
        buffer("_torsion_partner", zm[3:, 3])
        buffer("_free_bond", free_rows - 1)
        buffer("_constrained_bond", constrained_rows - 1)
        buffer("constrained_lengths", lengths, torch.float64)
        buffer("constrained_atoms", zm[constrained_rows, :2].reshape(-1, 2))
        offsets = np.cumsum([0, n_bonds, n_angles, n_torsions, n_rigid])
        buffer("bond_indices", np.arange(offsets[0], offsets[1]))
        buffer("angle_indices", np.arange(offsets[1], offsets[2]))
        buffer("torsion_indices", np.arange(offsets[2], offsets[3]))
        buffer("rigid_indices", np.arange(offsets[3], offsets[4]))
        circular = np.zeros(self.dim, dtype=bool)
        circular[offsets[2] : offsets[3]] = True
        if n_rigid:
            circular[offsets[3] + 4 : offsets[3] + 6] = True
        buffer("circular", circular, torch.bool)
        buffer("bond_atoms", zm[free_rows, :2].reshape(-1, 2))
        buffer("angle_atoms", zm[2:, :3])
        buffer("torsion_atoms", zm[3:, :4])
        level_rows, self._level_sizes = _levels(zm)
        buffer("_level_rows", level_rows)
        # the third atom sits on the axis of the first bond, pointing back to the first atom or away from it
        self._third_axis_sign = 1.0 if zm[2, 1] == zm[0, 0] else -1.0

    @classmethod
    def from_topology(
        cls,
        topology: Any,
        *,
        system: Any = None,
        zmatrix: Any = None,
        remove_rigid_body: bool = False,
        eps: float = 1e-6,
        constraint_tolerance: float | None = 1e-4,
    ) -> "InternalCoordinateTransform":
        """Build the transform of a molecule from its topology and, optionally, its ``System``.

        Parameters
        ----------
        topology : mdtraj.Topology or openmm.app.Topology
            One connected molecule.
        system : openmm.System, optional
            Its constrained bonds are held at their constrained lengths.
        zmatrix : array_like of int, shape (n_atoms, 4), optional
            A z-matrix of your own; by default :func:`build_zmatrix` builds one.
        remove_rigid_body, eps, constraint_tolerance
            As in the class.

        Returns
        -------
        InternalCoordinateTransform
        """
        top = as_topology(topology)
        zm = build_zmatrix(top) if zmatrix is None else validate_zmatrix(zmatrix, top.n_atoms)
        constraints: dict[tuple[int, int], float] = {}
        if system is not None:
            if system.getNumParticles() != top.n_atoms:
                raise ValueError(f"system has {system.getNumParticles()} particles but the topology has {top.n_atoms} atoms")
            constraints = constraints_from_system(system)
        return cls(
            zm,
            constraints=constraints,
            remove_rigid_body=remove_rigid_body,
            eps=eps,
            constraint_tolerance=constraint_tolerance,
        )

    def extra_repr(self) -> str:
        return (
            f"n_atoms={self.n_atoms}, dim={self.dim}, constraints={len(self.constrained_lengths)}, "
            f"remove_rigid_body={self.remove_rigid_body}"
        )

    def reset_clamp_counts(self) -> None:
        """Set every entry of :attr:`clamp_counts` to zero."""
        self.clamp_counts = {name: 0 for name in CLAMP_EVENTS}

    def _count(self, name: str, mask: Tensor) -> None:
        self.clamp_counts[name] += int(mask.sum())

    # ------------------------------------------------------------------ helpers
    def _positions(self, x: Tensor) -> Tensor:
        n = self.n_atoms
        if not isinstance(x, Tensor):
            raise TypeError(f"positions must be a torch.Tensor of shape (batch, {n}, 3), got {type(x).__name__}")
        if x.ndim == 3 and x.shape[1:] == (n, 3):
            pos = x
        elif x.ndim == 2 and x.shape[1] == 3 * n:
            pos = x.reshape(x.shape[0], n, 3)
        else:
            raise ValueError(f"positions must have shape (batch, {n}, 3) or (batch, {3 * n}), got {tuple(x.shape)}")
        if not pos.is_floating_point():
            raise TypeError(f"positions must be a floating-point tensor (nm), got dtype {pos.dtype}")
        bad = ~torch.isfinite(pos).flatten(1).all(dim=1)
        if bad.any():
            raise ValueError(f"{int(bad.sum())} of {pos.shape[0]} configurations hold non-finite positions, first: sample {int(bad.nonzero()[0])}")
        return pos

    def _log_jacobian(self, bonds: Tensor, angles: Tensor, theta: Tensor | None) -> Tensor:
        """log |det dx/dq| from the full bond vector (batch, n-1) and angles (batch, n-2)."""
        short = bonds < self.eps
        sines = torch.sin(angles)
        flat = sines < self.eps
        self._count("bond", short)
        self._count("angle", flat)
        log_jac = 2 * torch.log(bonds.clamp_min(self.eps)).sum(dim=1) + torch.log(sines.clamp_min(self.eps)).sum(dim=1)
        if theta is not None:
            sin_theta = torch.sin(theta)
            self._count("orientation", sin_theta < self.eps)
            log_jac = log_jac + torch.log(sin_theta.clamp_min(self.eps))
        return log_jac

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Internal coordinates of Cartesian positions.

        Parameters
        ----------
        x : Tensor, shape (batch, n_atoms, 3) or (batch, 3 * n_atoms), nm

        Returns
        -------
        q : Tensor, shape (batch, dim)
            Bonds (nm), angles, torsions and rigid body (radians, nm), laid out
            as in the module docstring.
        ladj : Tensor, shape (batch,)
            ``log |det dq/dx|`` as defined in the class docstring.
        """
        pos = self._positions(x)
        batch = pos.shape[0]
        atom, bond_partner = self._atom, self._bond_partner
        to_partner = pos[:, atom[1:]] - pos[:, bond_partner]  # (batch, n-1, 3)
        bonds = torch.linalg.vector_norm(to_partner, dim=-1)

        outward = to_partner[:, 1:]
        back = pos[:, self._angle_partner] - pos[:, bond_partner[1:]]
        angles = torch.atan2(torch.linalg.vector_norm(torch.linalg.cross(outward, back), dim=-1), (outward * back).sum(-1))

        x_d, x_a = pos[:, self._torsion_partner], pos[:, self._angle_partner[1:]]
        x_b, x_i = pos[:, bond_partner[2:]], pos[:, atom[3:]]
        b0, b1, b2 = x_a - x_d, x_b - x_a, x_i - x_b
        n1, n2 = torch.linalg.cross(b0, b1), torch.linalg.cross(b1, b2)
        b1_norm = torch.linalg.vector_norm(b1, dim=-1)
        torsions = torch.atan2(b1_norm * (b0 * n2).sum(-1), (n1 * n2).sum(-1))
        scale = torch.linalg.vector_norm(b0, dim=-1) * b1_norm
        frame_sine = torch.linalg.vector_norm(n1, dim=-1) / scale.clamp_min(torch.finfo(pos.dtype).tiny)
        degenerate = torch.cat([(bonds[:, :1] < self.eps), frame_sine < self.eps], dim=1)
        if degenerate.any():
            sample, row = (int(v) for v in degenerate.nonzero()[0])
            row += 2
            refs = self.zmatrix[row, 1:].tolist()
            raise ValueError(
                f"{int(degenerate.any(dim=1).sum())} of {batch} configurations cannot be represented: in sample "
                f"{sample}, the reference atoms {[r for r in refs if r >= 0]} of atom {int(self.zmatrix[row, 0])} "
                f"(z-matrix row {row}) are collinear or coincide, so its torsion is undefined"
            )

        # rigid body: Euler angles of the frame built on the first bond and the third atom
        origin = pos[:, atom[0]]
        first = to_partner[:, 0]
        theta = torch.atan2(torch.linalg.vector_norm(first[:, :2], dim=-1), first[:, 2])
        phi = torch.atan2(first[:, 1], first[:, 0])
        _, e_theta, e_phi = _unit_frame(theta, phi)
        third = to_partner[:, 1]
        psi = torch.atan2((third * e_phi).sum(-1), (third * e_theta).sum(-1))

        if len(self.constrained_lengths):
            lengths = self.constrained_lengths.to(pos.dtype)
            if self.constraint_tolerance is not None:
                deviation = (bonds[:, self._constrained_bond] - lengths).abs()
                if (deviation > self.constraint_tolerance).any():
                    sample, c = (int(v) for v in (deviation > self.constraint_tolerance).nonzero()[0])
                    i, j = self.constrained_atoms[c].tolist()
                    raise ValueError(
                        f"the constrained bond between atoms {i} and {j} is {float(bonds[sample, self._constrained_bond[c]]):.6g} nm "
                        f"in sample {sample}, expected {float(lengths[c]):.6g} nm within {self.constraint_tolerance} nm; "
                        "these configurations do not satisfy the System's constraints"
                    )
            bonds = bonds.index_copy(1, self._constrained_bond, lengths.expand(batch, -1))

        parts = [bonds[:, self._free_bond], angles, torsions]
        if not self.remove_rigid_body:
            parts.append(torch.cat([origin, torch.stack([theta, phi, psi], dim=-1)], dim=1))
        ladj = -self._log_jacobian(bonds, angles, None if self.remove_rigid_body else theta)
        return torch.cat(parts, dim=1), ladj

    # ------------------------------------------------------------------ inverse
    def in_domain(self, q: Tensor) -> Tensor:
        """Which internal-coordinate vectors ``inverse`` accepts.

        Parameters
        ----------
        q : Tensor, shape (batch, dim)

        Returns
        -------
        ok : BoolTensor, shape (batch,)
            True where every value is finite, no bond is negative, and every
            angle (and the rigid ``theta``) lies in [0, pi].
        """
        check_flat(q, self.dim, "internal coordinates")
        pi = q.new_tensor(math.pi)
        ok = torch.isfinite(q).all(dim=1)
        ok &= (q[:, self.bond_indices] >= 0).all(dim=1)
        polar = torch.cat([self.angle_indices, self.rigid_indices[3:4]])
        ok &= ((q[:, polar] >= 0) & (q[:, polar] <= pi)).all(dim=1)
        return ok

    def inverse(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """Cartesian positions of internal coordinates.

        Parameters
        ----------
        q : Tensor, shape (batch, dim)
            Laid out as in the module docstring; torsions may take any real
            value (they are periodic).

        Returns
        -------
        x : Tensor, shape (batch, n_atoms, 3), nm
        ladj : Tensor, shape (batch,)
            ``log |det dx/dq|`` as defined in the class docstring.
        """
        check_flat(q, self.dim, "internal coordinates")
        ok = self.in_domain(q)
        if not ok.all():
            first = int((~ok).nonzero()[0])
            raise ValueError(
                f"{int((~ok).sum())} of {q.shape[0]} internal-coordinate vectors (first: sample {first}) are outside "
                "the domain: values must be finite, bonds >= 0 nm, angles and theta in [0, pi]; "
                "mask them with in_domain() first"
            )
        batch, dtype = q.shape[0], q.dtype
        bonds = q[:, self.bond_indices]
        if len(self.constrained_lengths):
            full = q.new_empty(batch, self.n_atoms - 1)
            full[:, self._free_bond] = bonds
            full[:, self._constrained_bond] = self.constrained_lengths.to(dtype)
            bonds = full
        angles, torsions = q[:, self.angle_indices], q[:, self.torsion_indices]
        if self.remove_rigid_body:
            origin = q.new_zeros(batch, 3)
            theta = phi = psi = q.new_zeros(batch)
        else:
            rigid = q[:, self.rigid_indices]
            origin, theta, phi, psi = rigid[:, :3], rigid[:, 3], rigid[:, 4], rigid[:, 5]

        atom = self._atom
        pos = q.new_zeros(batch, self.n_atoms, 3)
        pos[:, atom[0]] = origin
        u, e_theta, e_phi = _unit_frame(theta, phi)
        pos[:, atom[1]] = origin + bonds[:, :1] * u
        a2, p2 = angles[:, :1], psi[:, None]
        direction = self._third_axis_sign * torch.cos(a2) * u + torch.sin(a2) * (torch.cos(p2) * e_theta + torch.sin(p2) * e_phi)
        pos[:, atom[2]] = pos[:, self._bond_partner[1]] + bonds[:, 1:2] * direction

        tiny = torch.finfo(dtype).tiny
        start = 0
        for size in self._level_sizes:
            rows = self._level_rows[start : start + size]
            start += size
            x_b = pos[:, self._bond_partner[rows + 2]]
            x_a = pos[:, self._angle_partner[rows + 1]]
            x_d = pos[:, self._torsion_partner[rows]]
            axis, lever = x_b - x_a, x_a - x_d
            axis_norm = torch.linalg.vector_norm(axis, dim=-1, keepdim=True)
            normal = torch.linalg.cross(lever, axis)
            normal_norm = torch.linalg.vector_norm(normal, dim=-1, keepdim=True)
            scale = axis_norm * torch.linalg.vector_norm(lever, dim=-1, keepdim=True)
            self._count("frame", normal_norm < self.eps * scale)
            e1 = axis / axis_norm.clamp_min(tiny)
            e3 = normal / normal_norm.clamp_min(self.eps * scale).clamp_min(tiny)
            e2 = torch.linalg.cross(e3, e1)
            r, a, t = bonds[:, rows + 2, None], angles[:, rows + 1, None], torsions[:, rows, None]
            local = -torch.cos(a) * e1 + torch.sin(a) * (torch.cos(t) * e2 + torch.sin(t) * e3)
            pos[:, atom[rows + 3]] = x_b + r * local

        ladj = self._log_jacobian(bonds, angles, None if self.remove_rigid_body else theta)
        return pos, ladj
