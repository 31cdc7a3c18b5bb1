r"""Identical particles put in a fixed order: a fundamental domain of their permutations.

A system with groups of identical particles (a solvent) has an energy ``u`` that is
invariant under every permutation ``sigma`` within a group, so its labelled Boltzmann
density has ``|G|`` equivalent copies (``|G| = prod_g n_g!``).  A generator trained on
raw MD frames would have to learn all copies, or one copy with ragged edges.
:class:`ReferenceOrdering` removes the symmetry: within each group it assigns the
particles to the points of a fixed reference (a lattice, say) by the optimal assignment
that minimises ``sum_i |x_i - r_{sigma(i)}|^2`` (the Hungarian algorithm,
:func:`scipy.optimize.linear_sum_assignment`) and relabels them in the order of the
points.  Since ``sum_i |x_i|^2`` and ``sum_k |r_k|^2`` do not depend on ``sigma``,
the identity is optimal exactly when ``sum_i x_i . r_i >= sum_i x_i . r_{sigma(i)}`` for
every ``sigma``: the **ordered set** ``D`` is an intersection of half-spaces through
the origin, a convex polyhedral cone, and every configuration has one relabelling in it
(ties between two assignments have measure zero).

Effect on the density.  Relabelling is a permutation of coordinates, volume
preserving, so if ``x`` has the labelled density ``p(x) = exp(-u(x)) / Z`` then its
ordered relabelling has the density

.. math:: p_D(x) = |G|\, p(x)\, 1_D(x) = \exp(-u(x))\, 1_D(x) / (Z / |G|).

On ``D`` the ordered density is the labelled one times ``|G|``; its log-normaliser is
``log Z - log |G|``.  A permutation-invariant observable (a distance within the dimer,
the state) has the same distribution under both, so free energies between states and
profiles along such coordinates are unchanged.  A generator trained on ordered frames
is a density ``q`` on all of space; reweighted to ``p_D`` (log weight ``-u - log q`` in
``D``, ``-inf`` outside, :meth:`ReferenceOrdering.is_ordered`) it gives exact
estimates, and its samples outside ``D`` only cost effective sample size.

Arrays are numpy: positions of shape ``(n_frames, n_particles, n_dims)`` in any length
unit (nm in this package), particle indices as in the System.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["ReferenceOrdering", "square_lattice"]


def square_lattice(n_points: int, half_width: float) -> np.ndarray:
    """The ``n_points`` centres of a square grid of cells tiling ``[-half_width, half_width]^2``.

    Parameters
    ----------
    n_points : int
        A perfect square (36 gives 6 x 6 cells).
    half_width : float
        Half the side of the square.

    Returns
    -------
    ndarray, shape (n_points, 2), float64
        Row-major (x slowest, then y), in the unit of ``half_width``.
    """
    side = math.isqrt(int(n_points))
    if side < 1 or side * side != n_points:
        raise ValueError(f"a square lattice needs a perfect square number of points, got {n_points}")
    if not half_width > 0:
        raise ValueError(f"half_width must be positive, got {half_width}")
    centres = (np.arange(side) + 0.5) * (2.0 * half_width / side) - half_width
    return np.stack(np.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2)


class ReferenceOrdering:
    """Relabel the particles of each group of identical particles to match a fixed reference.

    Parameters
    ----------
    n_particles : int
        Particles per configuration.
    groups : sequence of int sequences
        Disjoint groups of interchangeable particles (indices into the configuration).
    references : sequence of arrays, shape (len(group), n_dims)
        One reference point per particle of each group; particle ``groups[g][k]`` of an
        ordered configuration is the one assigned to ``references[g][k]``.  The points
        must be distinct.

    Notes
    -----
    The group of relabellings has ``|G| = prod_g len(group)!`` elements;
    :attr:`log_group_order` is ``log |G|``, the log-density offset of the ordered
    density (module notes).
    """

    def __init__(self, n_particles: int, groups: Sequence[Sequence[int]], references: Sequence[np.ndarray]):
        self.n_particles = int(n_particles)
        if len(groups) != len(references) or not groups:
            raise ValueError(f"need one reference per group and at least one group, got {len(groups)} groups and {len(references)} references")
        self.groups = [np.asarray(g, dtype=np.int64) for g in groups]
        self.references = [np.asarray(r, dtype=np.float64) for r in references]
        used = np.concatenate(self.groups)
        if used.size != np.unique(used).size or used.min() < 0 or used.max() >= self.n_particles:
            raise ValueError(f"groups must be disjoint sets of particle indices in [0, {self.n_particles}), got {[g.tolist() for g in self.groups]}")
        dims = {r.shape[-1] for r in self.references if r.ndim == 2}
        for g, r in zip(self.groups, self.references):
            if r.ndim != 2 or r.shape[0] != g.size or len(dims) != 1:
                raise ValueError(f"each reference must have shape (len(group), n_dims) with one n_dims for all; got {r.shape} for a group of {g.size}")
            if np.unique(r, axis=0).shape[0] != r.shape[0] or not np.isfinite(r).all():
                raise ValueError("reference points must be finite and distinct")
        self.n_dims = dims.pop()

    @property
    def log_group_order(self) -> float:
        """``log |G| = sum_g log(len(group)!)``."""
        return float(sum(math.lgamma(g.size + 1) for g in self.groups))

    def _check(self, positions) -> np.ndarray:
        x = np.asarray(positions, dtype=np.float64)
        x = x[None] if x.ndim == 2 else x
        if x.ndim != 3 or x.shape[1:] != (self.n_particles, self.n_dims):
            raise ValueError(f"positions must have shape (n_frames, {self.n_particles}, {self.n_dims}), got {np.shape(positions)}")
        if not np.isfinite(x).all():
            raise ValueError("positions hold non-finite values (NaN or inf)")
        return x

    def _costs(self, x: np.ndarray, group: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Squared distances particle -> reference point, shape (n_frames, n_group, n_group)."""
        delta = x[:, group, None, :] - reference[None, None, :, :]
        return (delta * delta).sum(-1)

    def permutation(self, positions) -> np.ndarray:
        """The relabelling that orders each frame.

        Parameters
        ----------
        positions : ndarray, shape (n_frames, n_particles, n_dims)

        Returns
        -------
        ndarray, shape (n_frames, n_particles), int64
            ``positions[f, order[f]]`` is frame ``f`` ordered; particles outside every
            group keep their place.
        """
        x = self._check(positions)
        order = np.tile(np.arange(self.n_particles), (x.shape[0], 1))
        for group, reference in zip(self.groups, self.references):
            costs = self._costs(x, group, reference)
            for f in range(x.shape[0]):
                particle, point = linear_sum_assignment(costs[f])
                order[f, group[point]] = group[particle]
        return order

    def reorder(self, positions) -> np.ndarray:
        """Each frame with its particles relabelled into the ordered set; shape and dtype float64 as given (a single frame gains a frame axis)."""
        x = self._check(positions)
        order = self.permutation(x)
        return np.take_along_axis(x, order[:, :, None], axis=1)

    def is_ordered(self, positions, tolerance: float = 1e-9) -> np.ndarray:
        """Whether each frame lies in the ordered set ``D`` (the identity is an optimal assignment).

        Parameters
        ----------
        positions : ndarray, shape (n_frames, n_particles, n_dims)
        tolerance : float
            Relative slack on the assignment cost, for rounding: a tie counts as ordered.

        Returns
        -------
        ndarray, shape (n_frames,), bool
        """
        x = self._check(positions)
        ordered = np.ones(x.shape[0], dtype=bool)
        for group, reference in zip(self.groups, self.references):
            costs = self._costs(x, group, reference)
            identity = np.einsum("fkk->f", costs)
            for f in np.flatnonzero(ordered):
                particle, point = linear_sum_assignment(costs[f])
                best = costs[f, particle, point].sum()
                ordered[f] = identity[f] <= best + tolerance * max(1.0, abs(best))
        return ordered

    def refined(self, positions, n_iterations: int = 5) -> "ReferenceOrdering":
        """A new ordering whose reference points are the mean positions of the ordered ``positions``.

        Alternates ordering the frames and moving each point to the mean of the particles
        assigned to it (k-means with one particle per point and frame), so that the
        reference sits where the particles are and the ordered set's faces lie where the
        data are sparse.  The result depends on the frames; fix it before training and keep it.

        Parameters
        ----------
        positions : ndarray, shape (n_frames, n_particles, n_dims)
        n_iterations : int
        """
        x = self._check(positions)
        ordering = self
        for _ in range(int(n_iterations)):
            ordered = ordering.reorder(x)
            ordering = ReferenceOrdering(self.n_particles, self.groups, [ordered[:, g].mean(0) for g in self.groups])
        return ordering
