"""
The bounded action distributions behind the policy options ``action_prob_floor`` and ``min_std``: SB3's
distributions with a floor under every action's probability, or under the Gaussian's standard deviation, computed
inside the distribution that samples the actions and gives the loss its log-probabilities and entropy.
(As in sb3-contrib's ``common/maskable/``: the distributions here, the policies that use them in ``policies.py``.)
"""

import math

import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    Distribution,
    MultiCategoricalDistribution,
)

from sb3_reinforce.reinforce.checks import is_real


def mix_with_uniform(log_probs: th.Tensor, floor: float) -> th.Tensor:
    """
    Log-probabilities of ``(1 - floor) * p + floor / n`` from the log-probabilities of ``p`` over the last axis
    (``n`` choices), computed in log space so that it stays exact for probabilities far below ``floor``.

    :param log_probs: Normalised log-probabilities, shape ``(..., n)``
    :param floor: The mixture weight of the uniform distribution, in [0, 1)
    :return: The mixture's log-probabilities, each at least ``log(floor / n)``
    """
    n_choices = log_probs.shape[-1]
    return th.logaddexp(log_probs + math.log1p(-floor), th.full_like(log_probs, math.log(floor / n_choices)))


class FlooredCategoricalDistribution(CategoricalDistribution):
    """Categorical distribution ``(1 - floor) * softmax(logits) + floor * uniform``."""

    def __init__(self, action_dim: int, floor: float):
        super().__init__(action_dim)
        self.floor = floor

    def proba_distribution(self, action_logits: th.Tensor) -> "FlooredCategoricalDistribution":
        return super().proba_distribution(mix_with_uniform(th.log_softmax(action_logits, dim=-1), self.floor))


class FlooredMultiCategoricalDistribution(MultiCategoricalDistribution):
    """Each sub-action is ``(1 - floor) * softmax(logits_i) + floor * uniform_i``."""

    def __init__(self, action_dims: list[int], floor: float):
        super().__init__(action_dims)
        self.floor = floor

    def proba_distribution(self, action_logits: th.Tensor) -> "FlooredMultiCategoricalDistribution":
        mixed = [
            mix_with_uniform(th.log_softmax(split, dim=-1), self.floor)
            for split in th.split(action_logits, list(self.action_dims), dim=1)
        ]
        return super().proba_distribution(th.cat(mixed, dim=1))


class FlooredBernoulliDistribution(BernoulliDistribution):
    """Each bit is 1 with probability ``(1 - floor) * sigmoid(logit) + floor / 2``."""

    def __init__(self, action_dims: int, floor: float):
        super().__init__(action_dims)
        self.floor = floor

    def proba_distribution(self, action_logits: th.Tensor) -> "FlooredBernoulliDistribution":
        # log P(1) and log P(0) of the mixture; their difference is the mixture's logit.
        log_sigmoid = th.nn.functional.logsigmoid
        log_p = mix_with_uniform(th.stack([log_sigmoid(action_logits), log_sigmoid(-action_logits)], dim=-1), self.floor)
        return super().proba_distribution(log_p[..., 0] - log_p[..., 1])


class MinStdDiagGaussianDistribution(DiagGaussianDistribution):
    """Diagonal Gaussian whose standard deviation is at least ``min_std`` in every dimension."""

    def __init__(self, action_dim: int, min_std: float):
        super().__init__(action_dim)
        self.min_std = min_std
        self.min_log_std = math.log(min_std)

    def proba_distribution(self, mean_actions: th.Tensor, log_std: th.Tensor) -> "MinStdDiagGaussianDistribution":
        return super().proba_distribution(mean_actions, th.clamp(log_std, min=self.min_log_std))


def bounded_distribution(
    action_space: spaces.Space, action_dist: Distribution, action_prob_floor: float, min_std: float
) -> Distribution:
    """
    The distribution to use in place of SB3's ``action_dist`` for these options (``action_dist`` itself when both
    are 0). Raise a ``ValueError`` naming the option when it does not apply to the action space.
    """

    if not is_real(action_prob_floor) or not 0.0 <= action_prob_floor < 1.0:
        raise ValueError(f"policy_kwargs['action_prob_floor'] must be a number in [0, 1), got {action_prob_floor!r}")
    if not is_real(min_std) or not 0.0 <= min_std < math.inf:
        raise ValueError(f"policy_kwargs['min_std'] must be a finite number >= 0, got {min_std!r}")
    if min_std > 0 and not isinstance(action_space, spaces.Box):
        raise ValueError(
            f"policy_kwargs['min_std'] applies to Box actions, not to {action_space}; "
            "for Discrete, MultiDiscrete and MultiBinary actions use policy_kwargs['action_prob_floor']"
        )
    if action_prob_floor > 0:
        if isinstance(action_dist, CategoricalDistribution):
            return FlooredCategoricalDistribution(action_dist.action_dim, action_prob_floor)
        if isinstance(action_dist, MultiCategoricalDistribution):
            return FlooredMultiCategoricalDistribution(list(action_dist.action_dims), action_prob_floor)
        if isinstance(action_dist, BernoulliDistribution):
            return FlooredBernoulliDistribution(action_dist.action_dims, action_prob_floor)
        raise ValueError(
            "policy_kwargs['action_prob_floor'] applies to Discrete, MultiDiscrete and MultiBinary actions, "
            f"not to {action_space}; for Box actions use policy_kwargs['min_std']"
        )
    if min_std > 0:
        if type(action_dist) is DiagGaussianDistribution:
            return MinStdDiagGaussianDistribution(action_dist.action_dim, min_std)
        raise ValueError("policy_kwargs['min_std'] is not supported with use_sde=True (gSDE); use one or the other")
    return action_dist
