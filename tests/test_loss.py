"""CausalRewardLoss against its definition computed here from numpy pieces, and a training step of a
small reward model under torch.compile(fullgraph=True)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import causal_rewards as cr
from causal_rewards import CausalRewardLoss, CausalRewardOutput


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(7)
    n = 24
    r_c = torch.randn(n, generator=gen, dtype=torch.float64)
    r_r = torch.randn(n, generator=gen, dtype=torch.float64) - 0.3
    b_c = torch.randint(0, 3, (n,), generator=gen)
    b_r = torch.randint(0, 3, (n,), generator=gen)
    return r_c, r_r, b_c, b_r


@pytest.mark.parametrize("conditional", [True, False])
@pytest.mark.parametrize("with_margin", [False, True])
def test_loss_matches_definition(batch, conditional, with_margin):
    r_c, r_r, b_c, b_r = batch
    margin = torch.linspace(0.0, 1.0, r_c.shape[0], dtype=torch.float64) if with_margin else None
    loss_fn = CausalRewardLoss(
        lambda_mmd=2.5,
        conditional=conditional,
        kernel="laplacian",
        bandwidth=0.7,
        estimator="unbiased",
        num_bins=3,
    )
    out = loss_fn(r_c, r_r, b_c, b_r, margin=margin)
    assert isinstance(out, CausalRewardOutput)

    diff = (r_c - r_r).numpy() - (0.0 if margin is None else margin.numpy())
    preference = -log_sigmoid(diff).mean()
    options = {"num_bins": 3, "kernel": "laplacian", "bandwidth": 0.7, "estimator": "unbiased"}
    if conditional:
        mmd = np.mean(
            [
                cr.pairwise_bin_mmd(r_c.numpy(), b_c.numpy(), **options),
                cr.pairwise_bin_mmd(r_r.numpy(), b_r.numpy(), **options),
            ]
        )
    else:
        mmd = cr.pairwise_bin_mmd(np.concatenate([r_c, r_r]), np.concatenate([b_c, b_r]), **options)
    assert out.preference_loss.item() == pytest.approx(preference, rel=1e-12)
    assert out.mmd.item() == pytest.approx(mmd, rel=1e-12)
    assert out.loss.item() == pytest.approx(preference + 2.5 * mmd, rel=1e-12)


def test_conditional_skips_a_group_in_one_bin(batch):
    r_c, r_r, b_c, _ = batch
    out = CausalRewardLoss(lambda_mmd=1.0, num_bins=3)(r_c, r_r, b_c, torch.zeros_like(b_c))
    assert out.mmd.item() == pytest.approx(
        cr.pairwise_bin_mmd(r_c.numpy(), b_c.numpy(), num_bins=3), rel=1e-12
    )


def test_gradient_and_reward_head_shape(batch):
    r_c, r_r, b_c, b_r = batch
    r_c = r_c[:, None].clone().requires_grad_(True)  # (B, 1) as a reward head returns
    r_r = r_r[:, None].clone().requires_grad_(True)
    loss_fn = CausalRewardLoss(lambda_mmd=0.5, num_bins=3)
    out = loss_fn(r_c, r_r, b_c.tolist(), b_r.tolist())
    out.loss.backward()
    # the penalty's gradient is the loss gradient minus the preference gradient
    leaf_c, leaf_r = r_c.detach().clone().requires_grad_(True), r_r.detach().clone().requires_grad_(True)
    (-torch.nn.functional.logsigmoid(leaf_c - leaf_r).mean()).backward()
    penalty_c = (r_c.grad - leaf_c.grad)[:, 0] / 0.5
    _, grad = cr.pairwise_bin_mmd_value_and_grad(r_c.detach()[:, 0].numpy(), b_c.numpy(), num_bins=3)
    np.testing.assert_allclose(penalty_c.numpy(), grad / 2, rtol=1e-9, atol=1e-13)  # 2 groups averaged


def test_bad_arguments(batch):
    r_c, r_r, b_c, b_r = batch
    with pytest.raises(ValueError, match="reduction='none'"):
        CausalRewardLoss(reduction="none")
    with pytest.raises(ValueError, match="lambda_mmd must be a number >= 0"):
        CausalRewardLoss(lambda_mmd=-1.0)
    with pytest.raises(ValueError, match="unknown kernel"):
        CausalRewardLoss(kernel="nope")
    loss_fn = CausalRewardLoss()
    with pytest.raises(ValueError, match="r_chosen has shape"):
        loss_fn(r_c, r_r[:-1], b_c, b_r)
    with pytest.raises(ValueError, match="bins_rejected must have shape"):
        loss_fn(r_c, r_r, b_c, b_r[:-1])
    with pytest.raises(TypeError, match="bins_chosen must hold integers"):
        loss_fn(r_c, r_r, b_c.tolist() and [0.5] * len(b_c), b_r)
    with pytest.raises(ValueError, match=r"bins\[3\] = 9 is out of range \[0, 3\)"):
        CausalRewardLoss(num_bins=3, conditional=False)(
            r_c, r_r, torch.where(torch.arange(len(b_c)) == 3, 9, b_c), b_r
        )


class TinyRewardModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    def forward(self, features):
        return self.body(features)


def _train(compiled: bool, x_c, x_r, b_c, b_r, steps: int = 3):
    torch.manual_seed(0)
    model = TinyRewardModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = CausalRewardLoss(lambda_mmd=1.0, num_bins=4)

    def forward(x_c, x_r, b_c, b_r):
        return loss_fn(model(x_c), model(x_r), b_c, b_r)

    # fullgraph: the custom op must trace with no graph break; AOTAutograd compiles the backward
    step = torch.compile(forward, fullgraph=True, backend="aot_eager") if compiled else forward
    losses = []
    for _ in range(steps):
        out = step(x_c, x_r, b_c, b_r)
        out.loss.backward()
        losses.append(out.loss.detach())
        optimizer.step()
        optimizer.zero_grad()
    return torch.stack(losses), [p.detach().clone() for p in model.parameters()]


def test_training_step_under_torch_compile_fullgraph():
    gen = torch.Generator().manual_seed(0)
    x_c, x_r = torch.randn(32, 8, generator=gen), torch.randn(32, 8, generator=gen)
    b_c, b_r = torch.randint(0, 4, (32,), generator=gen), torch.randint(0, 4, (32,), generator=gen)
    eager_losses, eager_params = _train(False, x_c, x_r, b_c, b_r)
    compiled_losses, compiled_params = _train(True, x_c, x_r, b_c, b_r)
    torch.testing.assert_close(compiled_losses, eager_losses)
    assert eager_losses[-1] < eager_losses[0]
    for a, b in zip(compiled_params, eager_params):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------------------- bad settings
@pytest.mark.parametrize(
    ("lam", "error", "match"),
    [
        (float("inf"), ValueError, "lambda_mmd must be a number >= 0 and finite, got inf"),
        (float("nan"), ValueError, "lambda_mmd must be a number >= 0 and finite, got nan"),
        (-1.0, ValueError, "lambda_mmd must be a number >= 0"),
        (np.float64("inf"), ValueError, "got inf"),
        (torch.tensor(float("nan")), ValueError, "got nan"),
        ("1.0", TypeError, "lambda_mmd must be a number, got str"),
        (True, TypeError, "lambda_mmd must be a number, got bool"),
        (torch.tensor([1.0, 2.0]), TypeError, "lambda_mmd must be a number, got Tensor"),
        (np.array([1.0]), TypeError, "lambda_mmd must be a number, got ndarray"),
    ],
)
def test_lambda_that_would_give_nan_losses_is_refused(lam, error, match):
    with pytest.raises(error, match=match):
        CausalRewardLoss(lam)


@pytest.mark.parametrize(
    "lam", [np.float64(2.5), np.float32(2.5), np.int64(2), np.array(2.5), torch.tensor(2.5), torch.tensor(2)]
)
def test_lambda_accepts_numpy_and_0d_tensor_scalars(lam, batch):
    r_c, r_r, b_c, b_r = batch
    loss_fn = CausalRewardLoss(lam, num_bins=3)
    assert isinstance(loss_fn.lambda_mmd, float) and loss_fn.lambda_mmd == float(lam)
    out = loss_fn(r_c, r_r, b_c, b_r)
    assert out.loss.item() == pytest.approx(out.preference_loss.item() + float(lam) * out.mmd.item(), rel=1e-12)


@pytest.mark.parametrize(
    ("margin", "error", "match"),
    [
        (float("nan"), ValueError, "margin must be finite, got nan"),
        (float("inf"), ValueError, "margin must be finite, got inf"),
        (torch.tensor([0.0] * 5 + [float("nan")] + [0.0] * 18), ValueError, r"margin\[5\] is nan"),
        (torch.full((24,), -float("inf")), ValueError, r"margin\[0\] is -inf"),
        (torch.zeros(3), ValueError, r"margin must be a number or have shape \(24,\)"),
        ("0.5", TypeError, "margin must be a number or a tensor"),
    ],
)
def test_margin_that_would_give_nan_losses_is_refused(margin, error, match, batch):
    r_c, r_r, b_c, b_r = batch
    with pytest.raises(error, match=match):
        CausalRewardLoss(1.0, num_bins=3)(r_c, r_r, b_c, b_r, margin=margin)


def test_readme_flow_with_fitted_bins():
    """Binner -> CausalRewardLoss(num_bins=binner.num_bins_) works, and works with tied data whose
    quantile edges merge into fewer bins."""
    rng = np.random.default_rng(0)
    for lengths in (rng.integers(5, 400, size=500), np.r_[np.full(300, 10), np.full(150, 20), np.full(50, 30)]):
        binner = cr.Binner(kind="quantile", num_bins=10).fit(lengths)
        assert 2 <= binner.num_bins_ <= 10
        loss_fn = CausalRewardLoss(lambda_mmd=10.0, conditional=True, num_bins=binner.num_bins_)
        len_c, len_r = lengths[:32], lengths[32:64]
        out = loss_fn(torch.randn(32), torch.randn(32), binner.transform(len_c), binner.transform(len_r))
        assert torch.isfinite(out.loss)


@pytest.mark.parametrize("lengths", [np.full(100, 7), np.r_[np.full(99, 7), 8]])
def test_readme_flow_refuses_single_bin_data_at_fit(lengths):
    """Data whose quantile bins would collapse into one are refused at fit, with a clear message,
    instead of giving num_bins_ = 1, which CausalRewardLoss refuses."""
    with pytest.raises(ValueError, match="single"):
        cr.Binner(kind="quantile", num_bins=10).fit(lengths)


# ------------------------------------------------------------------------- scale-invariant penalty
def _scale_batch(seed=3, n=40, num_bins=4):
    gen = torch.Generator().manual_seed(seed)
    r_c = 3.0 * torch.randn(n, generator=gen, dtype=torch.float64) + 1.5
    r_r = 3.0 * torch.randn(n, generator=gen, dtype=torch.float64)
    b_c = torch.randint(0, num_bins, (n,), generator=gen)
    b_r = torch.randint(0, num_bins, (n,), generator=gen)
    return r_c, r_r, b_c, b_r


@pytest.mark.parametrize("kernel", ["rbf", "laplacian", "imq", "energy"])
@pytest.mark.parametrize("conditional", [True, False])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_scale_invariant_penalty_value_is_blind_to_the_scale(kernel, conditional, estimator):
    r_c, r_r, b_c, b_r = _scale_batch()
    loss_fn = CausalRewardLoss(1.0, conditional=conditional, kernel=kernel, estimator=estimator, num_bins=4,
                               scale_invariant=True)
    base = loss_fn(r_c, r_r, b_c, b_r).mmd.item()
    assert base > 0
    for c in (3.7, 1e-3, 1e4, -2.0):
        assert loss_fn(c * r_c, c * r_r, b_c, b_r).mmd.item() == pytest.approx(base, rel=1e-12, abs=0)
    # and it is the ordinary statistic of the standardised rewards, computed here in numpy
    r = np.concatenate([r_c.numpy(), r_r.numpy()])
    z = (r - r.mean()) / r.std()
    bins = np.concatenate([b_c.numpy(), b_r.numpy()])
    groups = np.r_[np.zeros(len(r_c)), np.ones(len(r_r))].astype(np.int64) if conditional else None
    expected = cr.pairwise_bin_mmd(z, bins, num_bins=4, groups=groups, kernel=kernel, estimator=estimator)
    assert base == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kernel", ["rbf", "laplacian", "imq", "energy"])
@pytest.mark.parametrize("conditional", [True, False])
def test_scale_invariant_penalty_gradient_is_orthogonal_to_the_scale_direction(kernel, conditional):
    r_c, r_r, b_c, b_r = _scale_batch(seed=5)
    r_c.requires_grad_(True)
    r_r.requires_grad_(True)
    loss_fn = CausalRewardLoss(1.0, conditional=conditional, kernel=kernel, num_bins=4, scale_invariant=True)
    loss_fn(r_c, r_r, b_c, b_r).mmd.backward()
    g = torch.cat([r_c.grad, r_r.grad])
    r = torch.cat([r_c, r_r]).detach()
    assert g.norm() > 1e-6  # the penalty still moves the rewards
    assert abs(torch.dot(g, r).item()) <= 1e-10 * (g.norm() * r.norm()).item()  # d/dc MMD(c r) = 0
    assert abs(g.sum().item()) <= 1e-10 * g.norm().item() * len(g) ** 0.5  # and to shifts r + t
    # against finite differences of the value, independent of autograd
    direction = torch.randn(len(g), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h = 1e-6
    n = len(r_c)

    def value(x):
        return loss_fn(x[:n], x[n:], b_c, b_r).mmd.item()

    numeric = (value(r + h * direction) - value(r - h * direction)) / (2 * h)
    assert torch.dot(g, direction).item() == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_scale_invariant_penalty_of_equal_rewards_is_zero_with_a_finite_gradient():
    r = torch.full((6,), 2.5, dtype=torch.float64, requires_grad=True)
    out = CausalRewardLoss(1.0, num_bins=2, scale_invariant=True)(r[:3], r[3:], [0, 1, 0], [1, 0, 1])
    out.mmd.backward()
    assert out.mmd.item() == 0.0 and torch.isfinite(r.grad).all()


def test_scale_invariant_refuses_a_non_bool():
    with pytest.raises(TypeError, match="scale_invariant must be a bool"):
        CausalRewardLoss(scale_invariant="yes")


# ------------------------------------------------------------------------------------------------ ties
def test_ties_are_a_half_label_in_the_bradley_terry_term():
    r_c = torch.tensor([0.0, 2.0, 1.0], dtype=torch.float64)
    r_r = torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64)
    loss_fn = CausalRewardLoss(0.0, num_bins=2)
    out = loss_fn(r_c, r_r, [0, 1, 0], [1, 0, 1], preference=torch.tensor([0.5, 1.0, 0.5]))
    # by hand: d = (0, 2, -1); tie: -(log s(d) + log s(-d)) / 2; decided: -log s(d)
    expected = (math.log(2.0) + math.log1p(math.exp(-2.0))
                + 0.5 * (math.log1p(math.exp(1.0)) + math.log1p(math.exp(-1.0)))) / 3
    assert out.preference_loss.item() == pytest.approx(expected, rel=1e-12)
    decided = loss_fn(r_c, r_r, [0, 1, 0], [1, 0, 1], preference=torch.ones(3, dtype=torch.float64))
    assert decided.preference_loss.item() == pytest.approx(loss_fn(r_c, r_r, [0, 1, 0], [1, 0, 1]).preference_loss.item())
    with pytest.raises(ValueError, match="probabilities in"):
        loss_fn(r_c, r_r, [0, 1, 0], [1, 0, 1], preference=torch.tensor([0.5, 1.5, 0.0]))
