"""Internal coordinates: z-matrices and the Cartesian <-> internal bijection.

See ``docs/internal_coordinates.md`` for the layout, the rigid-body options and
what constraints mean for reweighting.
"""

from .constraints import constraint_metric_log_det, constraints_from_system, match_constraints, particle_masses
from .local import LocalInternalCoordinates, local_rows, select_atoms
from .guarded import CircularToReal, GuardedCoordinates, inverse_in_domain, principal_domain
from .normalization import InternalCoordinateNormalization
from .permutation import ReferenceOrdering, square_lattice
from .transform import CLAMP_EVENTS, InternalCoordinateTransform
from .zmatrix import MAIN_CHAIN_ATOM_NAMES, build_zmatrix, validate_zmatrix

__all__ = [
    "build_zmatrix",
    "validate_zmatrix",
    "MAIN_CHAIN_ATOM_NAMES",
    "constraints_from_system",
    "match_constraints",
    "particle_masses",
    "constraint_metric_log_det",
    "InternalCoordinateTransform",
    "InternalCoordinateNormalization",
    "GuardedCoordinates",
    "CircularToReal",
    "principal_domain",
    "inverse_in_domain",
    "CLAMP_EVENTS",
    "LocalInternalCoordinates",
    "local_rows",
    "select_atoms",
    "ReferenceOrdering",
    "square_lattice",
]
