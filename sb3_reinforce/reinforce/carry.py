"""
Episodes that are still running when a rollout ends (``incomplete_episodes``): which steps of a rollout have a
Monte Carlo return, and the steps held over to a later rollout (``"carry"``).

:func:`assemble_batch` is the whole of it, a pure function: a rollout plus the steps held over from earlier ones in,
the steps of one update with their returns and the next held-over state out. ``REINFORCE.train`` keeps the new
held-over state only if its gradient step goes through.

With ``"carry"`` a held-over step is weighted by ``min(pi(a|s) / beta(a|s), carry_ratio_clip)`` for its own action
only (``beta`` the policy that sampled it; the ratios of the later actions of its episode are ignored, as in PPO and
V-trace). With ``"drop"`` the steps of an episode that began in an earlier rollout and ends in this one have exact
returns and are kept; only the steps of episodes still running are left out.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from sb3_reinforce.reinforce.checks import INCOMPLETE_EPISODES, Obs, check_one_of, index_obs
from sb3_reinforce.reinforce.estimator import discounted_returns


def _concat_obs(parts: list[Obs]) -> Obs:
    first = parts[0]
    if isinstance(first, dict):
        return {key: np.concatenate([part[key] for part in parts]) for key in first}  # type: ignore[index]
    return np.concatenate(parts)  # type: ignore[arg-type]


@dataclass
class Steps:
    """
    Steps of a rollout or of a batch: observations, actions, rewards and the log-probabilities of the actions under
    the policy that sampled them. Shaped ``(n_steps, n_envs, ...)`` for a rollout, flat ``(n, ...)`` otherwise.
    """

    observations: Obs
    actions: np.ndarray
    rewards: np.ndarray
    log_probs: np.ndarray

    def __len__(self) -> int:
        return len(self.log_probs)

    def take(self, index: Any) -> "Steps":
        return Steps(index_obs(self.observations, index), self.actions[index], self.rewards[index], self.log_probs[index])

    def copy(self) -> "Steps":
        observations = (
            {key: value.copy() for key, value in self.observations.items()}
            if isinstance(self.observations, dict)
            else self.observations.copy()
        )
        return Steps(observations, self.actions.copy(), self.rewards.copy(), self.log_probs.copy())

    @staticmethod
    def concat(parts: list["Steps"]) -> "Steps":
        if len(parts) == 1:
            return parts[0]
        return Steps(
            _concat_obs([part.observations for part in parts]),
            np.concatenate([part.actions for part in parts]),
            np.concatenate([part.rewards for part in parts]),
            np.concatenate([part.log_probs for part in parts]),
        )


@dataclass
class Batch:
    """The steps of one update with their returns: this rollout's first, then those carried over from earlier ones."""

    steps: Steps
    returns: np.ndarray
    carried: np.ndarray  # bool, True for steps sampled by an earlier policy

    @property
    def n_fresh(self) -> int:
        """How many of the steps are this rollout's."""
        return len(self.carried) - int(self.carried.sum())


HeldOver = list[Steps | None]


def assemble_batch(
    rollout: Steps,
    dones: np.ndarray,
    gamma: float,
    incomplete_episodes: str,
    held_over: HeldOver,
    carry_max_steps: int,
    last_values: np.ndarray | None = None,
    truncation_values: np.ndarray | None = None,
) -> tuple[Batch | None, HeldOver]:
    """
    The steps of one update, with their returns, and what is held over to the next rollout.

    :param rollout: The rollout's steps, shaped ``(n_steps, n_envs, ...)``.
    :param dones: Whether each env's episode ended with each step, ``(n_steps, n_envs)``.
    :param gamma: Discount factor.
    :param incomplete_episodes: ``"carry"``, ``"drop"`` or ``"bootstrap"`` (see ``REINFORCE``).
    :param held_over: Per env, the steps of its running episode held over from earlier rollouts (``None``: none).
    :param carry_max_steps: At most this many steps per env are held over; the oldest are dropped.
    :param last_values: ``incomplete_episodes="bootstrap"``: the value of the state after the rollout, per env.
    :param truncation_values: Values ending the episodes truncated by a time limit (see :func:`discounted_returns`).
    :return: The batch (``None`` when no step has a return yet), and the held-over steps per env if the update goes
        through: copies, at most ``carry_max_steps`` each, never views into the rollout.
    """
    check_one_of("incomplete_episodes", incomplete_episodes, INCOMPLETE_EPISODES)
    n_steps, n_envs = dones.shape
    returns, complete = discounted_returns(
        rollout.rewards,
        dones,
        gamma,
        last_values=last_values if incomplete_episodes == "bootstrap" else None,
        truncation_values=truncation_values,
    )
    used = np.ones_like(complete) if incomplete_episodes == "bootstrap" else complete
    used_index = np.nonzero(used)
    parts, part_returns = [rollout.take(used_index)], [returns[used_index]]
    n_fresh = len(part_returns[0])

    next_held_over: HeldOver = [None] * n_envs
    if incomplete_episodes == "carry":
        for env_idx in range(n_envs):
            held = held_over[env_idx]
            if held is not None and complete[0, env_idx]:
                # The held-over episode ended in this rollout: its return continues into this rollout's first step.
                held_returns, _ = discounted_returns(
                    held.rewards[:, None],
                    np.zeros((len(held), 1), dtype=bool),
                    gamma,
                    last_values=returns[0, env_idx : env_idx + 1],
                )
                parts.append(held)
                part_returns.append(held_returns[:, 0])
                held = None
            first_open = int(complete[:, env_idx].sum())
            if first_open < n_steps:
                # Copies, not views: a view would keep this whole rollout alive while the episode runs on.
                open_steps = rollout.take((slice(first_open, None), env_idx)).copy()
                held = open_steps if held is None else Steps.concat([held, open_steps])
                if len(held) > carry_max_steps:
                    held = held.take(slice(len(held) - carry_max_steps, None)).copy()
            next_held_over[env_idx] = held

    carried = np.zeros(sum(len(part) for part in parts), dtype=bool)
    carried[n_fresh:] = True
    if len(carried) == 0:
        return None, next_held_over
    return Batch(Steps.concat(parts), np.concatenate(part_returns), carried), next_held_over
