"""Rollout buffers that also record where episodes end, which the Monte Carlo returns need."""

import numpy as np
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer


class _EpisodeEndsMixin:
    """
    Adds, per step and env, whether the episode ended with that step (``dones``), the value of the next state where
    the episode was truncated by a time limit (``truncation_values``, 0 elsewhere and without a critic) and the value
    of the state after the rollout (``tail_values``, used by ``incomplete_episodes="bootstrap"`` only).

    SB3's buffers only know ``episode_starts``, which loses whether the rollout's last step ended its episode.
    """

    buffer_size: int
    n_envs: int
    pos: int
    dones: np.ndarray
    truncation_values: np.ndarray
    tail_values: np.ndarray

    def reset(self) -> None:
        self.dones = np.zeros((self.buffer_size, self.n_envs), dtype=bool)
        self.truncation_values = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.tail_values = np.zeros(self.n_envs, dtype=np.float32)
        super().reset()  # type: ignore[misc]

    def record_episode_ends(self, dones: np.ndarray, truncation_values: np.ndarray | None = None) -> None:
        """
        Record the episode ends of the step most recently added with ``add()``.

        :param dones: Whether each env's episode ended with that step, shape ``(n_envs,)``.
        :param truncation_values: ``V(s_{t+1})`` where the episode was truncated (and a critic is used), else 0.
        """
        self.dones[self.pos - 1] = dones
        if truncation_values is not None:
            self.truncation_values[self.pos - 1] = truncation_values


class ReinforceRolloutBuffer(_EpisodeEndsMixin, RolloutBuffer):
    """SB3's :class:`~stable_baselines3.common.buffers.RolloutBuffer` plus episode ends; same constructor."""


class ReinforceDictRolloutBuffer(_EpisodeEndsMixin, DictRolloutBuffer):
    """SB3's :class:`~stable_baselines3.common.buffers.DictRolloutBuffer` plus episode ends; same constructor."""
