"""Other fixes for reward hacking, trained on the same frozen encoder, head and data as CRM.

Each is compared with CRM by ``run_experiments`` (methods "odin", "calibrated", "centred",
"counterfactual"; the length penalty is ``PlainTrainerConfig.length_penalty``).

ODIN (Chen et al. 2024, "ODIN: Disentangled Reward Mitigates Hacking in RLHF", ICML): the head has
two outputs on a shared hidden layer, a quality reward r_q and a spurious reward r_s; Bradley-Terry
is taken on their sum and two terms disentangle them,

    L = BT(r_q + r_s) + lambda_corr [R(r_q; Z) - R(r_s; Z)] + lambda_orth |w_q . w_s|

R(r; Z) the batch's multiple correlation of the rewards with the spurious variable (|Pearson| for
one numeric Z such as length; for categorical Z, the correlation ratio of r on the one-hot
indicators), and w_q, w_s the two output weight vectors. At test time the reward is r_q. (The paper
ties r_s to length with a signed correlation; here its absolute value, which allows a Z of several
categories.)

Post-hoc calibration (Huang et al. 2024, "Post-hoc Reward Calibration: A Case Study on Length
Bias"): no retraining; the vanilla reward minus a LOWESS fit of reward on Z over the training split,

    r'(x, y) = r(x, y) - f(Z(y)),   f = LOWESS of {(Z_i, r_i)} on the training responses

(Cleveland 1979: at each point a linear fit weighted by the tricube of the distance over the
``frac`` nearest points, then ``iterations`` robustifying passes with bisquare weights of the
residuals). For a categorical Z the local fit at a category is the mean reward of its responses
(what LOWESS gives on a 0/1 variable), so f is the per-category (crossed cell) mean.

Reward centring (Eisenstein et al. 2023, "Helping or Herding?", as TRL's RewardTrainer has it):
+ c mean((r_w + r_l)^2) (``PlainTrainerConfig.center_rewards_coefficient``).

Counterfactual augmentation in the spirit of RRM (Liu et al. 2024, "RRM: Robust Reward Model
Training Mitigates Reward Hacking"): where the generator can make a response's counterfactual (same
quality, Z flipped), each training response y gets the tie (y, y') (Bradley-Terry label 1/2), so
the reward learns that Z alone makes no difference.
"""

from __future__ import annotations

import numpy as np
import torch

from ..training import PlainRewardTrainer, PreferencePairs
from .data import BiasTask, PairSplit, responses_of

# ------------------------------------------------------------------------------------------------ ODIN


class OdinHead(torch.nn.Module):
    """MLP([p, r, p * r]) -> hidden -> two outputs (quality, spurious); ``forward`` is the quality reward."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(3 * dim, hidden), torch.nn.ReLU())
        self.quality = torch.nn.Linear(hidden, 1)
        self.spurious = torch.nn.Linear(hidden, 1)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, r = x[:, 0], x[:, 1]
        h = self.body(torch.cat([p, r, p * r], dim=-1))
        return self.quality(h)[:, 0], self.spurious(h)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(x)[0]


def multiple_correlation(rewards: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """R(r; Z) = sqrt(R^2) of the least-squares fit of r on the columns of Z (with an intercept),
    differentiable in r; |Pearson(r, z)| for a single column. 0 when r or Z is constant."""
    centred = rewards - rewards.mean()
    columns = features - features.mean(dim=0, keepdim=True)
    fitted = columns @ (torch.linalg.pinv(columns) @ centred)  # the projection of r onto span(Z)
    total = centred.square().sum()
    r_squared = fitted.square().sum() / torch.where(total > 0, total, torch.ones_like(total))
    return r_squared.clamp_min(1e-12).sqrt()  # clamped: sqrt has an infinite slope at 0


def odin_terms(r_quality, r_spurious, features, w_quality, w_spurious, *, correlation: float = 1.0,
               orthogonality: float = 1.0) -> torch.Tensor:
    """lambda_corr [R(r_q; Z) - R(r_s; Z)] + lambda_orth |w_q . w_s|."""
    disentangle = multiple_correlation(r_quality, features) - multiple_correlation(r_spurious, features)
    return correlation * disentangle + orthogonality * torch.dot(w_quality.reshape(-1), w_spurious.reshape(-1)).abs()


def spurious_features(columns: list[np.ndarray], kinds: list[str]) -> torch.Tensor:
    """Z as numeric features: a numeric variable as itself, a categorical one as the indicators of its
    values (several variables side by side)."""
    parts = []
    for column, kind in zip(columns, kinds):
        if kind == "categorical":
            _, codes = np.unique(column, return_inverse=True)
            parts.append(np.eye(codes.max() + 1)[codes])
        else:
            parts.append(np.asarray(column, dtype=np.float64)[:, None])
    return torch.from_numpy(np.concatenate(parts, axis=1))


class OdinTrainer(PlainRewardTrainer):
    """``PlainRewardTrainer`` for an ``OdinHead`` with the ODIN terms added to its objective."""

    def __init__(self, model: OdinHead, config, train: PreferencePairs, eval=None, *, correlation: float = 1.0,
                 orthogonality: float = 1.0):
        if not isinstance(model, OdinHead):
            raise TypeError(f"OdinTrainer needs an OdinHead, got {type(model).__name__}")
        super().__init__(model, config, train, eval)
        self.correlation, self.orthogonality = float(correlation), float(orthogonality)
        kinds = self.bins.binning if isinstance(self.bins.binning, list) else [self.bins.binning] * train.num_variables
        pooled = spurious_features(train.pooled_spurious(), kinds)
        self._features = pooled[: len(train)], pooled[len(train):]

    def step_loss(self, index: torch.Tensor):
        pairs, n = self.train_pairs, index.numel()
        r_quality, r_spurious = self.model.heads(self.batch_inputs(pairs, index))
        total = r_quality + r_spurious
        out = self._objective(pairs, self._train_bins, index, total[:n], total[n:], training=True)
        features = torch.cat([self._features[0][index], self._features[1][index]]).to(total)
        extra = odin_terms(r_quality, r_spurious, features, self.model.quality.weight, self.model.spurious.weight,
                           correlation=self.correlation, orthogonality=self.orthogonality)
        return out.loss + extra, {**out.metrics(), "odin": float(extra.detach())}


# ---------------------------------------------------------------------------------- post-hoc calibration
def lowess(x, y, *, frac: float = 2 / 3, iterations: int = 3) -> np.ndarray:
    """Cleveland's LOWESS: the smoothed value at each x (a locally weighted linear fit over the
    ceil(frac * n) nearest points, tricube weights, then ``iterations`` robustifying passes)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size < 2:
        raise ValueError(f"lowess needs two 1-D arrays of one length >= 2, got {x.shape} and {y.shape}")
    if not (0 < frac <= 1):
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    k = min(len(x), max(2, int(np.ceil(frac * len(x)))))
    robustness = np.ones_like(y)
    points, where = np.unique(x, return_inverse=True)  # the fit at a point depends on the point only
    for _ in range(iterations + 1):
        fitted = np.array([_local_fit(x, y, robustness, x0, k) for x0 in points])[where]
        residuals = y - fitted
        scale = 6.0 * np.median(np.abs(residuals))
        if scale == 0:
            break
        robustness = np.clip(1 - (residuals / scale) ** 2, 0, None) ** 2  # bisquare
    return fitted


def _local_fit(x, y, robustness, x0: float, k: int) -> float:
    distance = np.abs(x - x0)
    radius = np.partition(distance, k - 1)[k - 1]
    weights = robustness * (np.clip(1 - (distance / radius) ** 3, 0, None) ** 3 if radius > 0 else (distance == 0))
    total = weights.sum()
    if total == 0:
        return float(y[distance == distance.min()].mean())
    mean_x, mean_y = weights @ x / total, weights @ y / total
    spread = weights @ (x - mean_x) ** 2
    if spread <= 1e-12 * max(1.0, mean_x**2) * total:  # all weight on one x: the local mean
        return float(mean_y)
    slope = weights @ ((x - mean_x) * (y - mean_y)) / spread
    return float(mean_y + slope * (x0 - mean_x))


class PosthocCalibration:
    """r' = r - f(Z), f fitted on the training responses: LOWESS for a numeric Z, the per-category
    mean for a categorical one (``kind`` "categorical"; rows of several columns are crossed cells)."""

    def __init__(self, kind: str, *, frac: float = 2 / 3, iterations: int = 3):
        self.kind, self.frac, self.iterations = kind, frac, iterations

    def fit(self, z, rewards) -> PosthocCalibration:
        z, rewards = np.asarray(z), np.asarray(rewards, dtype=np.float64)
        if self.kind == "categorical":
            keys = _keys(z)
            self.means = {key: float(rewards[[k == key for k in keys]].mean()) for key in set(keys)}
        else:
            x = z.astype(np.float64)
            fitted = lowess(x, rewards, frac=self.frac, iterations=self.iterations)
            self.x, first = np.unique(x, return_index=True)  # the fit depends on the point only: equal x, equal f
            self.f = fitted[first]
        return self

    def bias(self, z) -> np.ndarray:
        """f(Z): linear between the fitted values, constant beyond them; unseen categories get 0."""
        z = np.asarray(z)
        if self.kind == "categorical":
            return np.array([self.means.get(key, 0.0) for key in _keys(z)])
        return np.interp(z.astype(np.float64), self.x, self.f)

    def transform(self, z, rewards) -> np.ndarray:
        return np.asarray(rewards, dtype=np.float64) - self.bias(z)


def _keys(z: np.ndarray) -> list:
    return [tuple(row) for row in z.tolist()] if z.ndim == 2 else z.tolist()


# ------------------------------------------------------------------------------ counterfactual ties
def with_counterfactual_ties(task: BiasTask) -> PairSplit:
    """The training pairs followed by one tie per training response: (y, counterfactual of y)."""
    train = task.train
    counterfactual = task.counterfactuals["train"]
    prompts, responses, z = responses_of(train)
    n = len(train)
    return PairSplit(
        prompts=train.prompts + prompts,
        chosen=train.chosen + responses,
        rejected=train.rejected + counterfactual.texts,
        spurious_chosen=np.concatenate([np.asarray(train.spurious_chosen), z]),
        spurious_rejected=np.concatenate([np.asarray(train.spurious_rejected), counterfactual.spurious]),
        info={"preference": np.r_[np.ones(n), np.full(2 * n, 0.5)]},
    )
