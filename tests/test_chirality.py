"""Stereocentres of generated molecules: found from the topology, mirror images flagged."""

import numpy as np
import pytest

from openmm_bg.molecules import get_system, load_bundled_trajectory
from openmm_bg.molecules.chirality import handedness, inverted_fraction, stereocentres


def test_alanine_dipeptide_has_one_stereocentre_the_alpha_carbon():
    molecule = get_system("ala2-vacuum")
    centres = stereocentres(molecule.topology)
    atoms = list(molecule.topology.atoms)
    assert [str(atoms[i]) for i in centres[:, 0]] == ["ALA2-CA"]  # the methyl carbons (three H) are left out


def test_mirror_images_are_inverted_and_md_frames_are_not():
    molecule = get_system("ala2-vacuum")
    frames = load_bundled_trajectory("ala2-vacuum", stride=200)
    mirrored = frames * np.array([-1.0, 1.0, 1.0])
    fraction, inverted = inverted_fraction(np.concatenate([frames, mirrored[:3]]), molecule.topology, molecule.positions)
    assert inverted.tolist() == [False] * len(frames) + [True] * 3
    assert fraction == pytest.approx(3 / (len(frames) + 3))
    # a rotation is not a reflection
    c, s = np.cos(0.7), np.sin(0.7)
    rotated = frames @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]).T
    assert not inverted_fraction(rotated, molecule.topology, molecule.positions)[1].any()


def test_bad_positions_are_refused():
    with pytest.raises(ValueError, match=r"shape \(n_frames, n_atoms, 3\)"):
        handedness(np.zeros((4, 3)), np.zeros((1, 4), dtype=np.int64))
