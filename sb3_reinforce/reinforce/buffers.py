"""Rollout buffers that also record where episodes end, which the Monte Carlo returns need."""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.utils import obs_as_tensor

from sb3_reinforce.reinforce.carry import Batch, HeldOver, Steps, assemble_batch
from sb3_reinforce.reinforce.checks import Obs, check_finite, check_finite_rollout


class _EpisodeEndsMixin:
    """
    Adds, per step and env, whether the episode ended with that step (``dones``) and, with a critic, what the returns
    may be bootstrapped from: ``truncated`` marks the steps whose episode was truncated by a time limit,
    ``truncation_critic`` holds the critic's output for the state that followed them (0 elsewhere), and
    ``last_critic`` its output for the state after the rollout (``incomplete_episodes="bootstrap"`` only).

    The critic outputs are kept in the critic's own standardised units: ``train()`` maps them to returns with the
    scale of the update that uses them (``V = mean + std * critic``), the same scale its critic targets use.
    SB3's buffers only know ``episode_starts``, which loses whether the rollout's last step ended its episode.
    """

    buffer_size: int
    n_envs: int
    pos: int
    dones: np.ndarray
    truncated: np.ndarray
    truncation_critic: np.ndarray
    last_critic: np.ndarray

    def reset(self) -> None:
        self.dones = np.zeros((self.buffer_size, self.n_envs), dtype=bool)
        self.truncated = np.zeros((self.buffer_size, self.n_envs), dtype=bool)
        self.truncation_critic = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.last_critic = np.zeros(self.n_envs, dtype=np.float32)
        super().reset()  # type: ignore[misc]

    def record_episode_ends(
        self, dones: np.ndarray, truncated: np.ndarray | None = None, truncation_critic: np.ndarray | None = None
    ) -> None:
        """
        Record the episode ends of the step most recently added with ``add()``.

        :param dones: Whether each env's episode ended with that step, shape ``(n_envs,)``.
        :param truncated: Where the episode was truncated by a time limit and the critic read the state after it
            (with a critic only), same shape.
        :param truncation_critic: The critic's output for that state where ``truncated``, else 0.
        """
        self.dones[self.pos - 1] = dones
        if truncated is not None and truncation_critic is not None:
            self.truncated[self.pos - 1] = truncated
            self.truncation_critic[self.pos - 1] = truncation_critic

    def check_finite(self, next_obs: Obs) -> None:
        """
        Check the rollout's observations, ``next_obs`` (those after its last step) and its rewards for NaN and
        infinities (a :class:`~sb3_reinforce.reinforce.checks.NonFiniteError` names the env and step). Once per
        rollout, after it: a check at every step would cost several percent of the throughput with one env.
        """
        check_finite_rollout("observation", self.observations, first_step=0)  # type: ignore[attr-defined]
        check_finite("observation", next_obs, self.buffer_size)
        check_finite_rollout("reward", self.rewards, first_step=1)  # type: ignore[attr-defined]

    def critic_values(self, mean: float, std: float) -> tuple[np.ndarray, np.ndarray]:
        """
        The recorded critic outputs as values on the scale ``(mean, std)`` of returns: the truncation values (0 where
        no episode was truncated) and the values of the states after the rollout.
        """
        truncation_values = np.where(self.truncated, mean + std * self.truncation_critic, 0.0)
        return truncation_values, mean + std * self.last_critic

    def assemble(
        self, gamma: float, incomplete_episodes: str, held_over: HeldOver, carry_max_steps: int,
        critic_scale: tuple[float, float] | None = None,
    ) -> tuple[Batch | None, HeldOver]:  # fmt: skip
        """
        :func:`~sb3_reinforce.reinforce.carry.assemble_batch` of this rollout and the steps ``held_over`` from earlier
        ones, with the recorded critic outputs read on ``critic_scale`` (``None``: the returns the rewards alone give).
        """
        truncation_values = last_values = None
        if critic_scale is not None:
            truncation_values, last_values = self.critic_values(*critic_scale)
        rollout = Steps(self.observations, self.actions, self.rewards, self.log_probs)  # type: ignore[attr-defined]
        return assemble_batch(rollout, self.dones, gamma, incomplete_episodes, held_over, carry_max_steps,
                              last_values=last_values, truncation_values=truncation_values)  # fmt: skip


class ReinforceRolloutBuffer(_EpisodeEndsMixin, RolloutBuffer):
    """SB3's :class:`~stable_baselines3.common.buffers.RolloutBuffer` plus episode ends; same constructor."""


class ReinforceDictRolloutBuffer(_EpisodeEndsMixin, DictRolloutBuffer):
    """SB3's :class:`~stable_baselines3.common.buffers.DictRolloutBuffer` plus episode ends; same constructor."""


def batch_to_torch(batch: Batch, action_space: spaces.Space, device: th.device) -> tuple[Any, th.Tensor, th.Tensor, th.Tensor]:
    """
    The batch's observations, actions, returns and behaviour log-probabilities as tensors on ``device``; actions as
    SB3's buffers give them (float, MultiBinary being stored as int8; long indices for Discrete).
    """
    actions = th.as_tensor(batch.steps.actions.astype(np.float32, copy=False), device=device)
    if isinstance(action_space, spaces.Discrete):
        actions = actions.long().flatten()
    returns = th.as_tensor(batch.returns, device=device)
    behaviour_log_prob = th.as_tensor(batch.steps.log_probs, device=device)
    return obs_as_tensor(batch.steps.observations, device), actions, returns, behaviour_log_prob  # type: ignore[arg-type]


def critic_output(policy: ActorCriticPolicy, observations: Any) -> np.ndarray:
    """The critic's (standardised) output for a batch of observations, one per env."""
    with th.no_grad():
        return policy.predict_values(policy.obs_to_tensor(observations)[0]).cpu().numpy().flatten()


def critic_after_truncations(
    policy: ActorCriticPolicy, infos: list[dict[str, Any]], dones: np.ndarray, rollout_step: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """
    Where an env's episode was truncated by a time limit at this step, and the critic's (standardised) output for its
    terminal observation there, for :meth:`_EpisodeEndsMixin.record_episode_ends`; ``None`` if no episode ended.
    The terminal observation is checked for NaN and infinities first (a :class:`NonFiniteError` names the env).
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
                critic[idx] = policy.predict_values(policy.obs_to_tensor(terminal_obs)[0]).item()
            truncated[idx] = True
    return truncated, critic
