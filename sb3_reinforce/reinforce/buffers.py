"""
Rollout buffers that also record where episodes end, which the Monte Carlo returns need, and the critic's outputs the
returns may be bootstrapped from; :meth:`~_EpisodeEndsMixin.finish` turns a rollout into the update's batch.
"""

import numpy as np
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer

from sb3_reinforce.reinforce.batch import Batch, assemble_batch
from sb3_reinforce.reinforce.checks import check_finite, check_finite_rollout
from sb3_reinforce.reinforce.held_over import HeldOverSteps, Steps
from sb3_reinforce.reinforce.type_aliases import Obs


class _EpisodeEndsMixin:
    """
    Adds, per step and env, whether the episode ended with that step (``dones``) and, with a critic, what the returns
    may be bootstrapped from: ``truncated`` marks the steps whose episode was truncated by a time limit,
    ``truncation_critic`` holds the critic's output for the state that followed them (0 elsewhere), and
    ``last_critic`` its output for the state after the rollout (set with ``incomplete_episodes="bootstrap"`` only).

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
    last_critic: np.ndarray | None
    batch: Batch | None

    def reset(self) -> None:
        self.dones = np.zeros((self.buffer_size, self.n_envs), dtype=bool)
        self.truncated = np.zeros((self.buffer_size, self.n_envs), dtype=bool)
        self.truncation_critic = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.last_critic = None
        self.batch = None
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

    def finish(self, gamma: float, incomplete_episodes: str, held_over: HeldOverSteps | None) -> None:
        """
        After the rollout (as SB3's ``compute_returns_and_advantage``): assemble the update's :attr:`batch` in one pass
        (:func:`~sb3_reinforce.reinforce.batch.assemble_batch`), updating the held-over steps with ``"carry"``. The
        critic's recorded outputs (none without a critic) end the returns they bootstrap.
        """
        rollout = Steps(self.observations, self.actions, self.rewards, self.log_probs)  # type: ignore[attr-defined]
        self.batch = assemble_batch(
            rollout,
            self.dones,
            gamma,
            incomplete_episodes,
            held_over,
            self.truncated,
            self.truncation_critic,
            self.last_critic,
        )


class ReinforceRolloutBuffer(_EpisodeEndsMixin, RolloutBuffer):
    """SB3's :class:`~stable_baselines3.common.buffers.RolloutBuffer` plus episode ends; same constructor."""


class ReinforceDictRolloutBuffer(_EpisodeEndsMixin, DictRolloutBuffer):
    """SB3's :class:`~stable_baselines3.common.buffers.DictRolloutBuffer` plus episode ends; same constructor."""


def check_rollout_buffer_class(rollout_buffer_class: type) -> None:
    """REINFORCE needs the episode ends its own buffers record: raise a ``TypeError`` for any other buffer class."""
    if not issubclass(rollout_buffer_class, (ReinforceRolloutBuffer, ReinforceDictRolloutBuffer)):
        raise TypeError(
            "rollout_buffer_class must be a subclass of ReinforceRolloutBuffer or ReinforceDictRolloutBuffer "
            f"(REINFORCE needs the episode ends they record), got {rollout_buffer_class.__name__}"
        )
