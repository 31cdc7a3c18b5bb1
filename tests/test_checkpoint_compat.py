"""Checkpoints written before the package was laid out anew still load and sample identically.

The fixtures in ``tests/fixtures/legacy_83c9395`` were written by the code at commit
83c9395 (``make.py`` there says how): their checkpoints name the builders
``openmm_bg.builders.molecular_generator`` and ``openmm_bg.builders.realnvp_generator``,
and ``*.expected.npz`` holds what that code drew for a fixed latent seed.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from openmm_bg.generator import load_generator, read_torch_file

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_83c9395"


@pytest.mark.parametrize("name, builder", [("ala2-spline", "openmm_bg.builders.molecular_generator"), ("toy-realnvp", "openmm_bg.builders.realnvp_generator")])
def test_legacy_checkpoint_loads_and_samples_identically(name, builder):
    path = FIXTURES / f"{name}.pt"
    assert read_torch_file(path, "generator checkpoint")["builder"] == builder  # the old name, as written
    generator = load_generator(path)
    expected = np.load(FIXTURES / f"{name}.expected.npz")
    x, z, log_prob = generator.propose(expected["z"].shape[0], generator=torch.Generator().manual_seed(2024))
    # bit-identical on the machine that wrote them; 1e-12 leaves room for another CPU's float64 kernels
    np.testing.assert_array_equal(z.double().numpy(), expected["z"])
    np.testing.assert_allclose(x.double().numpy(), expected["x"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_prob.double().numpy(), expected["log_prob"], rtol=1e-12, atol=1e-12)


def test_an_unknown_builder_is_refused(tmp_path):
    state = read_torch_file(FIXTURES / "toy-realnvp.pt", "generator checkpoint")
    state["builder"] = "openmm_bg.builders.no_such_builder"
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="cannot import generator builder"):
        load_generator(tmp_path / "bad.pt")
