"""openmmtools moves that use a Boltzmann generator (see docs/moves.md).

* :class:`BoltzmannGeneratorMove`: independence Metropolis-Hastings with generator proposals;
* :class:`LatentMetropolisMove`: random-walk Metropolis in the generator's latent space;
* :class:`LocalGeneratorMove`: independence Metropolis-Hastings on one fragment (a side
  chain, a terminal segment) from a generator of its internal coordinates, the rest fixed.

All sit in ``MCMCSampler``, ``SequenceMove``/``WeightedMove`` and the multistate
samplers, serialise to YAML-safe plain values (the generator by checkpoint path) and
give every copy its own random stream.
"""

from .base import GeneratorMoveBase, clear_generator_cache
from .independence import BoltzmannGeneratorMove
from .latent import LatentMetropolisMove, latent_log_acceptance
from .local import LocalGeneratorMove, local_generator, local_generator_from_data
from .proposals import inverse_with_domain, place_in_frame, rigid_frame_atoms

__all__ = [
    "BoltzmannGeneratorMove",
    "LatentMetropolisMove",
    "LocalGeneratorMove",
    "local_generator",
    "local_generator_from_data",
    "GeneratorMoveBase",
    "clear_generator_cache",
    "latent_log_acceptance",
    "inverse_with_domain",
    "place_in_frame",
    "rigid_frame_atoms",
]
