"""Conditioner networks for coupling layers."""

from __future__ import annotations

from typing import Sequence

from torch import nn

__all__ = ["MLP"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU, "elu": nn.ELU}


class MLP(nn.Sequential):
    """A fully connected network ``in_features -> hidden... -> out_features``.

    Parameters
    ----------
    in_features, out_features : int
    hidden : sequence of int
        Widths of the hidden layers.
    activation : str
        One of ``relu``, ``tanh``, ``silu``, ``elu``; applied after each hidden layer.
    output_activation : str or None
        Applied to the output (the paper uses ``tanh`` for the scale network).
    zero_init : bool
        Start with a zero output layer, so a coupling layer built on it starts as the identity.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        output_activation: str | None = None,
        zero_init: bool = True,
    ):
        for name in (activation, output_activation):
            if name is not None and name not in _ACTIVATIONS:
                raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
        widths = [in_features, *hidden, out_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(_ACTIVATIONS[activation]())
        if output_activation is not None:
            layers.append(_ACTIVATIONS[output_activation]())
        super().__init__(*layers)
        if zero_init:
            last = layers[-1] if isinstance(layers[-1], nn.Linear) else layers[-2]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
