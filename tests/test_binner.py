"""Binner: fitted edges against their definitions, checkpoint round trips, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from causal_rewards import Binner


def test_quantile_bins_have_equal_counts():
    z = np.random.default_rng(0).normal(size=1000)
    binner = Binner("quantile", num_bins=10).fit(z)
    bins = binner.transform(z)
    assert binner.num_bins_ == 10 and bins.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(bins, minlength=10), np.full(10, 100))
    # definition: bin = number of edges <= z
    assert np.array_equal(bins, (z[:, None] >= binner.edges_[None, :]).sum(1))


def test_uniform_edges_and_out_of_range_values():
    binner = Binner("uniform", num_bins=4).fit([0.0, 1.0, 4.0, 8.0])
    np.testing.assert_allclose(binner.edges_, [2.0, 4.0, 6.0])
    assert binner.transform([-5.0, 0.0, 1.99, 2.0, 7.9, 8.0, 100.0]).tolist() == [0, 0, 0, 1, 3, 3, 3]


def test_ties_merge_quantile_edges():
    z = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    binner = Binner("quantile", num_bins=10).fit(z)
    assert binner.num_bins_ == 2
    assert binner.transform(z).tolist() == z.tolist()


def test_categorical_strings_and_unseen():
    binner = Binner("categorical").fit(["b", "a", "c", "a"])
    assert binner.categories_ == ["a", "b", "c"] and binner.num_bins_ == 3
    assert binner.transform(np.array(["c", "a"])).tolist() == [2, 0]
    with pytest.raises(ValueError, match=r"z\[1\] = 'zz' is a category not seen in fit"):
        binner.transform(["a", "zz"])


@pytest.mark.parametrize("kind", ["quantile", "uniform", "categorical"])
def test_state_round_trip_through_json(kind):
    z = np.random.default_rng(1).integers(0, 20, size=200).astype(float)
    binner = Binner(kind, num_bins=5).fit(z)
    state = json.loads(json.dumps(binner.state_dict()))
    restored = Binner().load_state_dict(state)
    assert restored.kind == kind and restored.num_bins_ == binner.num_bins_
    np.testing.assert_array_equal(restored.transform(z), binner.transform(z))
    np.testing.assert_array_equal(Binner.from_dict(binner.to_dict()).transform(z), binner.transform(z))


def test_torch_input_gives_tensor():
    torch = pytest.importorskip("torch")
    z = torch.tensor([3.0, 1.0, 2.0, 4.0])
    bins = Binner("quantile", num_bins=2).fit(z).transform(z)
    assert isinstance(bins, torch.Tensor) and bins.dtype == torch.int64 and bins.tolist() == [1, 0, 0, 1]


def test_bad_input():
    with pytest.raises(ValueError, match="unknown kind"):
        Binner("kmeans")
    with pytest.raises(ValueError, match="num_bins must be >= 2"):
        Binner(num_bins=1)
    with pytest.raises(TypeError, match="num_bins must be an integer"):
        Binner(num_bins=2.5)
    with pytest.raises(RuntimeError, match="not fitted"):
        Binner().transform([1.0])
    with pytest.raises(ValueError, match=r"z\[1\] is nan"):
        Binner().fit([1.0, float("nan")])
    with pytest.raises(ValueError, match="z is empty"):
        Binner().fit([])
    with pytest.raises(ValueError, match="must be 1-D"):
        Binner().fit(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="must hold numbers"):
        Binner("uniform").fit(["a", "b"])
    with pytest.raises(ValueError, match="missing"):
        Binner().load_state_dict({"kind": "uniform"})


def test_importing_the_package_does_not_import_torch():
    """torch is an optional extra: Binner and the numpy API load without it; the loss loads it lazily."""
    import subprocess
    import sys

    code = "import sys, causal_rewards; causal_rewards.Binner; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
