"""
REINFORCE's policies: SB3's actor-critic policies, plus two options that bound the distribution the actions are
sampled from, inside the model's own distribution.

- ``action_prob_floor=eps`` (Discrete, MultiDiscrete, MultiBinary): the policy *is* the mixture
  ``(1 - eps) * pi + eps * uniform``. Actions are sampled from it, and its log-probabilities and entropy are the ones
  the loss uses, so a sampled action can never have a probability below ``eps / n`` (``n`` the number of choices of
  the (sub-)action) and exploration never samples from a distribution the model does not know.
- ``min_std=s`` (Box): the Gaussian's standard deviation is ``max(exp(log_std), s)`` in every dimension.

Both default to 0, the textbook policy. With ``baseline="none"`` or ``"mean"`` only the actor (features extractor,
``mlp_extractor.policy_net``, ``action_net``) is evaluated and trained; the value head SB3 builds is unused.
"""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.utils import obs_as_tensor

from sb3_reinforce.reinforce.checks import Obs, check_finite
from sb3_reinforce.reinforce.distributions import bounded_distribution


class _BoundedDistributionMixin:
    """Adds ``action_prob_floor`` and ``min_std`` to an SB3 actor-critic policy (saved with it)."""

    action_dist: Distribution
    action_space: spaces.Space

    def __init__(self, *args: Any, action_prob_floor: float = 0.0, min_std: float = 0.0, **kwargs: Any):
        # A policy file (policy.save) that uses these options keeps them under a key that SB3's own loader refuses
        # with a message naming ours (see _get_constructor_parameters).
        options = kwargs.pop(_saved_options_key(type(self)), None)
        if options is not None:
            action_prob_floor, min_std = options["action_prob_floor"], options["min_std"]
        super().__init__(*args, **kwargs)
        # The action head SB3 built for its distribution fits ours: same parameters, another distribution on top.
        self.action_dist = bounded_distribution(self.action_space, self.action_dist, action_prob_floor, min_std)
        self.action_prob_floor = float(action_prob_floor)
        self.min_std = float(min_std)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        """
        What ``policy.save`` stores to rebuild the policy. Without these options (both 0), exactly SB3's: the file
        loads with SB3's ``ActorCriticPolicy.load`` too, as A2C's and PPO's do. With them, SB3's policy cannot apply
        them: they are stored under a key that its loader refuses by naming the loader to use.
        """
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        if self.action_prob_floor or self.min_std:
            data[_saved_options_key(type(self))] = dict(action_prob_floor=self.action_prob_floor, min_std=self.min_std)
        return data


def _saved_options_key(policy_class: type) -> str:
    alias = {"ReinforceCnnPolicy": "CnnPolicy", "ReinforceMultiInputPolicy": "MultiInputPolicy"}.get(
        policy_class.__name__, "MlpPolicy"
    )
    return f"action_prob_floor/min_std (REINFORCE-only options: load this file with sb3_reinforce.reinforce.{alias}.load)"


class ReinforcePolicy(_BoundedDistributionMixin, ActorCriticPolicy):
    """
    SB3's ``ActorCriticPolicy`` (see its parameters), plus:

    :param action_prob_floor: Mix the action distribution with the uniform one, with this weight in [0, 1)
        (Discrete, MultiDiscrete, MultiBinary actions): every action keeps a probability of at least
        ``action_prob_floor / n``; 0 (default) is the textbook policy
    :param min_std: Lower bound of the Gaussian's standard deviation (Box actions, without gSDE); 0 (default): none
    """


class ReinforceCnnPolicy(_BoundedDistributionMixin, ActorCriticCnnPolicy):
    """SB3's ``ActorCriticCnnPolicy`` with ``action_prob_floor`` and ``min_std`` (see :class:`ReinforcePolicy`)."""


class ReinforceMultiInputPolicy(_BoundedDistributionMixin, MultiInputActorCriticPolicy):
    """SB3's ``MultiInputActorCriticPolicy`` with ``action_prob_floor`` and ``min_std`` (see :class:`ReinforcePolicy`)."""


MlpPolicy = ReinforcePolicy
CnnPolicy = ReinforceCnnPolicy
MultiInputPolicy = ReinforceMultiInputPolicy
OUR_POLICIES = (ReinforcePolicy, ReinforceCnnPolicy, ReinforceMultiInputPolicy)


def env_actions(policy: ActorCriticPolicy, action_space: spaces.Space, actions: np.ndarray) -> np.ndarray:
    """
    The actions to send to the env for the ``actions`` sampled by ``policy``: unscaled (squashed outputs) or clipped to
    a Box, as SB3 does. The rollout buffer keeps the sampled ones, whose log-probabilities the update uses.
    """
    if not isinstance(action_space, spaces.Box):
        return actions
    if policy.squash_output:
        return policy.unscale_action(actions)
    return np.clip(actions, action_space.low, action_space.high)


def sample_actions(policy: ActorCriticPolicy, obs: Obs, device: th.device, rollout_step: int) -> tuple[np.ndarray, th.Tensor]:
    """
    Actions sampled from the policy's own distribution for a batch of observations (shaped as the action space), and
    their log-probabilities. torch refuses a distribution with NaN parameters: a non-finite observation that caused
    it is then named (:class:`~sb3_reinforce.reinforce.checks.NonFiniteError`).
    """
    try:
        with th.no_grad():
            distribution = policy.get_distribution(obs_as_tensor(obs, device))  # type: ignore[arg-type]
            sampled = distribution.get_actions()
            log_probs = distribution.log_prob(sampled)
    except (ValueError, RuntimeError):
        check_finite("observation", obs, rollout_step)
        raise
    return sampled.cpu().numpy().reshape((-1, *(policy.action_space.shape or ()))), log_probs


def evaluate_actions(
    policy: ActorCriticPolicy, observations: Any, actions: th.Tensor, with_critic: bool
) -> tuple[th.Tensor, th.Tensor | None, th.Tensor | None]:
    """
    Log-probabilities and entropy of the actions, and the critic's outputs when ``with_critic`` (else ``None``: only
    the actor is evaluated).
    """
    if with_critic:
        values, log_prob, entropy = policy.evaluate_actions(observations, actions)
        return log_prob, entropy, values.flatten()
    distribution = policy.get_distribution(observations)
    return distribution.log_prob(actions), distribution.entropy(), None
