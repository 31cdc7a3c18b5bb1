"""openmmtools moves that use a Boltzmann generator (see docs/moves.md).

* :class:`BoltzmannGeneratorMove`: independence Metropolis-Hastings with generator proposals;
* :class:`LatentMetropolisMove`: random-walk Metropolis in the generator's latent space.

Both sit in ``MCMCSampler``, ``SequenceMove``/``WeightedMove`` and the multistate
samplers, serialise to YAML-safe plain values (the generator by checkpoint path) and
give every copy its own random stream.
"""

from .base import GeneratorMoveBase, clear_generator_cache
from .independence import BoltzmannGeneratorMove
from .latent import LatentMetropolisMove, latent_log_acceptance
from .proposals import inverse_with_domain, place_in_frame, rigid_frame_atoms

__all__ = [
    "BoltzmannGeneratorMove",
    "LatentMetropolisMove",
    "GeneratorMoveBase",
    "clear_generator_cache",
    "latent_log_acceptance",
    "inverse_with_domain",
    "place_in_frame",
    "rigid_frame_atoms",
]
