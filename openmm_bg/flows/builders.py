"""Ready-made flow architectures."""

from __future__ import annotations

from typing import Sequence

import torch

from .base import Bijection, Sequential
from .coupling import NICERBlock, RealNVPBlock, half_mask
from .elementwise import ExpScaling, Permutation
from .spline import SplineCoupling

__all__ = ["real_nvp", "neural_spline", "nicer"]


def _blocks_with_permutations(blocks: list[Bijection], dim: int, permute: bool, seed: int) -> list[Bijection]:
    if not permute:
        return blocks
    rng = torch.Generator().manual_seed(seed)
    layers: list[Bijection] = []
    for i, block in enumerate(blocks):
        if i > 0:
            layers.append(Permutation.random(dim, generator=rng))
        layers.append(block)
    return layers


def real_nvp(
    dim: int,
    n_blocks: int = 4,
    hidden: Sequence[int] = (128, 128),
    scale_bound: float = 2.0,
    activation: str = "relu",
    permute: bool = False,
    seed: int = 0,
) -> Sequential:
    """A RealNVP flow: ``n_blocks`` blocks of two affine couplings with swapped halves.

    It starts as the identity map (zero-initialised output layers).

    Parameters
    ----------
    dim : int
        Number of dimensions (at least 2).
    n_blocks : int
        Number of :class:`RealNVPBlock` (each holds two coupling layers).
    hidden : sequence of int
        Hidden widths of every S and T network.
    scale_bound : float
        Largest absolute log-scale per coupling layer.
    activation : str
    permute : bool
        Insert a fixed random permutation between blocks so that the halves mix.
    seed : int
        Seed of those permutations.

    Returns
    -------
    Sequential
        A bijection on tensors of shape (batch, dim).
    """
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be at least 1, got {n_blocks}")
    blocks: list[Bijection] = [RealNVPBlock(dim, hidden, scale_bound, activation) for _ in range(n_blocks)]
    return Sequential(*_blocks_with_permutations(blocks, dim, permute, seed))


def neural_spline(
    dim: int,
    n_blocks: int = 4,
    hidden: Sequence[int] = (128, 128),
    n_bins: int = 8,
    bound: float = 5.0,
    activation: str = "relu",
    permute: bool = False,
    seed: int = 0,
) -> Sequential:
    """A neural spline flow: ``n_blocks`` pairs of :class:`SplineCoupling` with swapped halves.

    Same layout as :func:`real_nvp`, with rational-quadratic splines in place of the
    affine maps; it starts as the identity.

    Parameters
    ----------
    dim : int
        Number of dimensions (at least 2).
    n_blocks : int
        Number of coupling pairs.
    hidden : sequence of int
        Hidden widths of every knot network.
    n_bins : int
        Bins per spline.
    bound : float
        Splines act on ``[-bound, bound]``; the identity outside.
    activation : str
    permute : bool
        Insert a fixed random permutation between blocks.
    seed : int
        Seed of those permutations.

    Returns
    -------
    Sequential
        A bijection on tensors of shape (batch, dim).
    """
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be at least 1, got {n_blocks}")
    mask = half_mask(dim)
    blocks: list[Bijection] = [
        Sequential(SplineCoupling(mask, hidden, n_bins, bound, activation), SplineCoupling(~mask, hidden, n_bins, bound, activation))
        for _ in range(n_blocks)
    ]
    return Sequential(*_blocks_with_permutations(blocks, dim, permute, seed))


def nicer(
    dim: int,
    n_blocks: int = 5,
    hidden: Sequence[int] = (100, 100),
    activation: str = "relu",
    scaling: bool = True,
    permute: bool = False,
    seed: int = 0,
) -> Sequential:
    """A deep NICER network, optionally followed by an exponential scaling layer.

    Without scaling it is volume preserving (``ladj = 0``).

    Parameters
    ----------
    dim : int
    n_blocks : int
        Number of :class:`NICERBlock` (each holds two additive couplings).
    hidden : sequence of int
    activation : str
    scaling : bool
        Append :class:`ExpScaling` so that the flow can change volume.
    permute : bool
    seed : int

    Returns
    -------
    Sequential
    """
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be at least 1, got {n_blocks}")
    blocks: list[Bijection] = [NICERBlock(dim, hidden, activation) for _ in range(n_blocks)]
    layers = _blocks_with_permutations(blocks, dim, permute, seed)
    if scaling:
        layers.append(ExpScaling(dim))
    return Sequential(*layers)
