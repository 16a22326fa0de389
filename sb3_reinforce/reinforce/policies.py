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

import inspect
import pathlib
import re
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.utils import get_device, obs_as_tensor

from sb3_reinforce.reinforce.checks import check_finite, check_net_arch, diverged
from sb3_reinforce.reinforce.distributions import bounded_distribution
from sb3_reinforce.reinforce.save_file import reading_without_code, restricted_pickle
from sb3_reinforce.reinforce.type_aliases import Obs


class _ReinforcePolicyMixin:
    """
    What REINFORCE adds to an SB3 actor-critic policy: the options ``action_prob_floor`` and ``min_std`` (saved with
    it), and the methods the algorithm calls: :meth:`sample` and :meth:`env_actions` while collecting,
    :meth:`critic_output` and :meth:`critic_at_truncations` for the values returns may be bootstrapped from, and
    :meth:`evaluate_actor` (or SB3's ``evaluate_actions`` with a critic) in the update.
    """

    action_dist: Distribution
    action_space: spaces.Space
    device: th.device
    squash_output: bool
    get_distribution: Any
    predict_values: Any
    obs_to_tensor: Any
    unscale_action: Any
    optimizer: th.optim.Optimizer

    def __init__(self, *args: Any, action_prob_floor: float = 0.0, min_std: float = 0.0, **kwargs: Any):
        # A policy file (policy.save) that uses these options keeps them under a key that SB3's own loader refuses
        # with a message naming ours (see _get_constructor_parameters).
        options = kwargs.pop(_saved_options_key(type(self)), None)
        if options is not None:
            action_prob_floor, min_std = options["action_prob_floor"], options["min_std"]
        check_net_arch(kwargs.get("net_arch"))
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

    @classmethod
    def load(cls, path: str | pathlib.Path, device: th.device | str = "auto", trusted: bool = False) -> Any:
        """
        Load a policy saved with ``policy.save(path)``, as SB3 does, but without running code from the file: its
        objects (spaces, the classes of its arguments) are built from the allow-list of
        :mod:`sb3_reinforce.reinforce.save_file`, and anything else raises
        :class:`~sb3_reinforce.reinforce.save_file.CodeInFileError` before it runs.

        :param trusted: Load as SB3 does, unpickling whatever the file holds (it runs any code the file names): only
            for files you made or otherwise trust.
        """
        if trusted:
            return super().load(path, device)  # type: ignore[misc]
        device = get_device(device)
        with reading_without_code(path, "it", f"{path} is not a readable policy file"):
            saved = th.load(path, map_location=device, pickle_module=restricted_pickle, weights_only=False)
        policy = cls(**saved["data"])
        policy.load_state_dict(saved["state_dict"])  # type: ignore[attr-defined]
        policy.to(device)  # type: ignore[attr-defined]
        return policy

    def sample(self, obs: Obs, rollout_step: int) -> tuple[np.ndarray, th.Tensor]:
        """
        Actions sampled from the policy's own distribution for a batch of observations (shaped as the action space),
        and their log-probabilities. torch refuses a distribution with invalid parameters: a
        :class:`~sb3_reinforce.reinforce.checks.NonFiniteError` then names the non-finite observation that caused it,
        or, when the observations are finite, says that the weights diverged.
        """
        try:
            with th.no_grad():
                distribution = self.get_distribution(obs_as_tensor(obs, self.device))  # type: ignore[arg-type]
                sampled = distribution.get_actions()
                log_probs = distribution.log_prob(sampled)
        except (ValueError, RuntimeError) as error:
            check_finite("observation", obs, rollout_step)  # names a non-finite observation
            learning_rate = self.optimizer.param_groups[0]["lr"]
            raise diverged(
                f"The action distribution is invalid at step {rollout_step} of the rollout ({error})", learning_rate
            ) from error
        return sampled.cpu().numpy().reshape((-1, *(self.action_space.shape or ()))), log_probs

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """
        The actions to send to the env for ``actions`` sampled by :meth:`sample`: unscaled (squashed outputs) or
        clipped to a Box, as SB3 does. The rollout buffer keeps the sampled ones, whose log-probabilities the update uses.
        """
        if not isinstance(self.action_space, spaces.Box):
            return actions
        if self.squash_output:
            return self.unscale_action(actions)
        return np.clip(actions, self.action_space.low, self.action_space.high)

    def evaluate_actor(self, observations: Any, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor | None]:
        """Log-probabilities and entropy of the actions from the actor alone: SB3's ``evaluate_actions`` without the critic."""
        distribution = self.get_distribution(observations)
        return distribution.log_prob(actions), distribution.entropy()

    def critic_output(self, observations: Obs) -> np.ndarray:
        """The critic's (standardised) output for a batch of observations, one per env."""
        with th.no_grad():
            return self.predict_values(self.obs_to_tensor(observations)[0]).cpu().numpy().flatten()

    def critic_at_truncations(
        self, infos: list[dict[str, Any]], dones: np.ndarray, rollout_step: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """
        Where an env's episode was truncated by a time limit at this step, and the critic's (standardised) output for
        its terminal observation there; ``None`` if no episode ended. The terminal observation is checked for NaN and
        infinities first (a :class:`~sb3_reinforce.reinforce.checks.NonFiniteError` names the env).
        """
        if not dones.any():
            return None
        truncated = np.zeros(len(dones), dtype=bool)
        critic = np.zeros(len(dones), dtype=np.float32)
        for idx in np.flatnonzero(dones):
            terminal_obs = infos[idx].get("terminal_observation")
            if infos[idx].get("TimeLimit.truncated", False) and terminal_obs is not None:
                as_row = (
                    {key: np.asarray(value)[None] for key, value in terminal_obs.items()}
                    if isinstance(terminal_obs, dict)
                    else np.asarray(terminal_obs)[None]
                )
                check_finite("terminal observation", as_row, rollout_step, first_env=int(idx))
                with th.no_grad():
                    critic[idx] = self.predict_values(self.obs_to_tensor(terminal_obs)[0]).item()
                truncated[idx] = True
        return truncated, critic


def _saved_options_key(policy_class: type) -> str:
    alias = {"ReinforceCnnPolicy": "CnnPolicy", "ReinforceMultiInputPolicy": "MultiInputPolicy"}.get(
        policy_class.__name__, "MlpPolicy"
    )
    return f"action_prob_floor/min_std (REINFORCE-only options: load this file with sb3_reinforce.reinforce.{alias}.load)"


class ReinforcePolicy(_ReinforcePolicyMixin, ActorCriticPolicy):
    """
    SB3's ``ActorCriticPolicy`` (see its parameters), plus:

    :param action_prob_floor: Mix the action distribution with the uniform one, with this weight in [0, 1)
        (Discrete, MultiDiscrete, MultiBinary actions): every action keeps a probability of at least
        ``action_prob_floor / n``; 0 (default) is the textbook policy
    :param min_std: Lower bound of the Gaussian's standard deviation (Box actions, without gSDE); 0 (default): none
    """


class ReinforceCnnPolicy(_ReinforcePolicyMixin, ActorCriticCnnPolicy):
    """SB3's ``ActorCriticCnnPolicy`` with ``action_prob_floor`` and ``min_std`` (see :class:`ReinforcePolicy`)."""


class ReinforceMultiInputPolicy(_ReinforcePolicyMixin, MultiInputActorCriticPolicy):
    """SB3's ``MultiInputActorCriticPolicy`` with ``action_prob_floor`` and ``min_std`` (see :class:`ReinforcePolicy`)."""


MlpPolicy = ReinforcePolicy
CnnPolicy = ReinforceCnnPolicy
MultiInputPolicy = ReinforceMultiInputPolicy
OUR_POLICIES = (ReinforcePolicy, ReinforceCnnPolicy, ReinforceMultiInputPolicy)


def check_policy_class(policy_class: type) -> None:
    """REINFORCE calls the methods of its own policies: raise a ``TypeError`` for any other policy class."""
    if not (isinstance(policy_class, type) and issubclass(policy_class, _ReinforcePolicyMixin)):
        raise TypeError(
            "policy must be 'MlpPolicy', 'CnnPolicy', 'MultiInputPolicy' or a subclass of one of "
            "sb3_reinforce.reinforce.MlpPolicy, CnnPolicy, MultiInputPolicy (SB3's actor-critic policies plus the "
            f"methods REINFORCE calls; subclass them as you would SB3's), got {policy_class!r}"
        )


# Policy constructor arguments that REINFORCE passes itself, not through policy_kwargs.
SET_BY_THE_ALGORITHM = ("observation_space", "action_space", "lr_schedule", "use_sde")


def policy_kwargs_error(error: TypeError, policy_class: type, policy_kwargs: dict[str, Any]) -> Exception:
    """
    The error to raise when building the policy raised ``error``: a ``ValueError`` naming the ``policy_kwargs`` key
    Python refused and, for REINFORCE's own policies, the keys they accept; ``error`` itself otherwise (a user's
    policy class gets Python's message about its own signature).
    """
    match = re.search(r"(?:unexpected keyword argument|multiple values for (?:keyword )?argument) '(\w+)'", str(error))
    if match is None or match[1] not in policy_kwargs:
        return error
    key = match[1]
    if key in SET_BY_THE_ALGORITHM:
        hint = f"{key}: pass it to REINFORCE itself, not in policy_kwargs"
        return ValueError(f"policy_kwargs has unknown key(s) {key!r} ({hint})")
    if policy_class not in OUR_POLICIES:
        return error
    sb3_policy = policy_class.__mro__[2]  # after the REINFORCE mixin: SB3's actor-critic policy
    accepted = {name for name in inspect.signature(vars(sb3_policy)["__init__"]).parameters if name != "self"}
    accepted = (accepted | {"action_prob_floor", "min_std"}) - set(SET_BY_THE_ALGORITHM)
    return ValueError(
        f"policy_kwargs has unknown key(s) {key!r}; {policy_class.__name__} accepts: {', '.join(sorted(accepted))}"
    )
