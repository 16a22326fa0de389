"""
The batch of one update: which steps of a rollout have a Monte Carlo return under ``incomplete_episodes``, the steps
held over from earlier rollouts whose episode ended in this one, and their returns.

:func:`assemble_batch` is the whole of it, one pass over a rollout: the steps with a return go into the
:class:`Batch` (with ``"carry"``, followed by the held-over steps of the episodes that ended), the steps of episodes
still running into the :class:`~sb3_reinforce.reinforce.held_over.HeldOverSteps` store (``"carry"``) or nowhere
(``"drop"``); with ``"bootstrap"`` every step is used, its return ending with the critic's value after the rollout.

- ``"carry"``: a held-over step is weighted by ``min(pi(a|s) / beta(a|s), carry_ratio_clip)`` for its own action
  only (``beta`` the policy that sampled it; the ratios of the later actions of its episode are ignored, as in PPO and
  V-trace).
- ``"drop"``: the steps of an episode that began in an earlier rollout and ends in this one have exact returns and
  are kept; only the steps of episodes still running are left out.

The returns are computed once, from the rewards, with what a critic adds kept apart
(:func:`~sb3_reinforce.reinforce.estimator.bootstrap_terms`): :meth:`Batch.returns` gives the returns the rewards
alone give (for the running moments) and, with the update's scale, the returns with the critic's values.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.utils import obs_as_tensor

from sb3_reinforce.reinforce.estimator import bootstrap_terms, reward_to_go
from sb3_reinforce.reinforce.held_over import HeldOverSteps, Steps
from sb3_reinforce.reinforce.type_aliases import Obs


@dataclass
class Batch:
    """
    The steps of one update: this rollout's first (``n_fresh``), then those held over from earlier ones, episode by
    episode. Their observations are read an update chunk at a time (:meth:`chunks`), never copied as a whole.
    """

    pieces: list[Steps]  # flat; the first holds this rollout's steps, the others held-over blocks
    gamma: float
    fresh_returns: np.ndarray  # float64: the returns of this rollout's steps that the rewards alone give
    # What a critic adds to them (estimator.bootstrap_terms), None when nothing is bootstrapped.
    discount: np.ndarray | None = None
    critic: np.ndarray | None = None
    # Per held-over episode that ended: its rewards, and the index of the fresh step its return continues into.
    carried_episodes: list[tuple[np.ndarray, int]] = field(default_factory=list)

    @property
    def n_fresh(self) -> int:
        """How many of the steps are this rollout's."""
        return len(self.fresh_returns)

    def __len__(self) -> int:
        return self.n_fresh + sum(len(rewards) for rewards, _ in self.carried_episodes)

    @property
    def carried(self) -> np.ndarray:
        """Boolean mask of the steps sampled by an earlier policy (held over)."""
        carried = np.zeros(len(self), dtype=bool)
        carried[self.n_fresh :] = True
        return carried

    def returns(self, scale: tuple[float, float] | None = None) -> np.ndarray:
        """
        The returns of the batch's steps, float32. ``scale=None``: the returns the rewards alone give; ``(mean, std)``:
        with the critic's values ``V = mean + std * critic`` where a return is bootstrapped.
        """
        fresh = self.fresh_returns
        if scale is not None and self.discount is not None and self.critic is not None:
            mean, std = scale
            fresh = fresh + self.discount * (mean + std * self.critic)  # the values in float32, as the critic gives them
        returns = [fresh.astype(np.float32)]
        if self.carried_episodes:
            # One recursion for every held-over episode, a column each, aligned on its last held step: each episode's
            # return continues into the fresh step that follows that step.
            longest = max(len(rewards) for rewards, _ in self.carried_episodes)
            rewards = np.zeros((longest, len(self.carried_episodes)), dtype=np.float32)
            for column, (episode_rewards, _) in enumerate(self.carried_episodes):
                rewards[longest - len(episode_rewards) :, column] = episode_rewards
            following = returns[0][[first for _, first in self.carried_episodes]]
            carried = reward_to_go(rewards, np.zeros(rewards.shape, dtype=bool), self.gamma, last_values=following)
            returns += [
                carried[longest - len(episode_rewards) :, column].astype(np.float32)
                for column, (episode_rewards, _) in enumerate(self.carried_episodes)
            ]
        return np.concatenate(returns)

    def chunks(self, size: int) -> Iterator[tuple[slice, Steps]]:
        """
        The batch in consecutive chunks of at most ``size`` steps: the index range and its steps, observations as
        float32 (as the rollout buffer holds them). A chunk within one piece is a view; across pieces, one copy.
        """
        starts = np.cumsum([0] + [len(piece) for piece in self.pieces])
        for start in range(0, int(starts[-1]), size):
            stop = min(start + size, int(starts[-1]))
            parts = [
                piece.take(slice(max(start - first, 0), min(stop - first, len(piece))))
                for piece, first in zip(self.pieces, starts[:-1], strict=True)
                if first < stop and first + len(piece) > start
            ]
            yield slice(start, stop), _concat_as_float32(parts)


def _concat_as_float32(parts: list[Steps]) -> Steps:
    def concat(arrays: list[np.ndarray]) -> np.ndarray:
        if len(arrays) == 1:
            return arrays[0].astype(np.float32, copy=False)
        return np.concatenate(arrays, dtype=np.float32)

    first = parts[0].observations
    observations: Obs = (
        {key: concat([part.observations[key] for part in parts]) for key in first}  # type: ignore[index]
        if isinstance(first, dict)
        else concat([part.observations for part in parts])  # type: ignore[misc]
    )
    rest = [concat([getattr(part, name) for part in parts]) for name in ("actions", "rewards", "log_probs")]
    return Steps(observations, *rest)


def assemble_batch(
    rollout: Steps,
    dones: np.ndarray,
    gamma: float,
    incomplete_episodes: str,
    held_over: HeldOverSteps | None = None,
    truncated: np.ndarray | None = None,
    truncation_critic: np.ndarray | None = None,
    last_critic: np.ndarray | None = None,
) -> Batch | None:
    """
    The steps of one update with their returns; with ``"carry"``, ``held_over`` is updated in the same pass.

    :param rollout: The rollout's steps, shaped ``(n_steps, n_envs, ...)``.
    :param dones: Whether each env's episode ended with each step, ``(n_steps, n_envs)``.
    :param gamma: Discount factor.
    :param incomplete_episodes: ``"carry"``, ``"drop"`` or ``"bootstrap"`` (see ``REINFORCE``).
    :param held_over: The store of held-over steps (``"carry"`` only): the steps of episodes that ended in this
        rollout leave it for the batch, those of episodes still running join it.
    :param truncated: With a critic: where an episode was truncated by a time limit, ``(n_steps, n_envs)``.
    :param truncation_critic: With a critic: its output for the state after each truncation.
    :param last_critic: ``"bootstrap"``: the critic's output for the state after the rollout, per env.
    :return: The batch, or ``None`` when no step has a return yet.
    """
    n_envs = dones.shape[1]
    fresh_returns = reward_to_go(rollout.rewards, dones, gamma)
    complete = np.logical_or.accumulate(dones[::-1], axis=0)[::-1]
    used = np.ones_like(complete) if incomplete_episodes == "bootstrap" else complete
    used_index = np.nonzero(used)
    batch = Batch([rollout.take(used_index)], gamma, fresh_returns[used_index])
    if truncated is not None and truncation_critic is not None and (truncated.any() or last_critic is not None):
        discount, critic = bootstrap_terms(dones, gamma, truncated, truncation_critic, last_critic)
        batch.discount, batch.critic = discount[used_index], critic[used_index]

    if incomplete_episodes == "carry":
        assert held_over is not None, "incomplete_episodes='carry' needs the held-over store"
        fresh_index = np.cumsum(used) - 1  # of each (step 0, env) in the batch: used steps come step by step
        for env in range(n_envs):
            if held_over.n_steps(env) and complete[0, env]:  # the held-over episode ended in this rollout
                blocks = held_over.pop(env)
                batch.pieces += blocks
                batch.carried_episodes.append((np.concatenate([block.rewards for block in blocks]), int(fresh_index[env])))
            first_open = int(complete[:, env].sum())
            held_over.append(env, rollout.take((slice(first_open, None), env)))
        held_over.end_rollout()
    return batch if len(batch) else None


def to_torch(steps: Steps, action_space: spaces.Space, device: th.device) -> tuple[Any, th.Tensor, th.Tensor]:
    """
    The observations, actions and behaviour log-probabilities of ``steps`` as tensors on ``device``; actions as SB3's
    buffers give them (float, MultiBinary being stored as int8; long indices for Discrete).
    """
    actions = th.as_tensor(steps.actions.astype(np.float32, copy=False), device=device)
    if isinstance(action_space, spaces.Discrete):
        actions = actions.long().flatten()
    return obs_as_tensor(steps.observations, device), actions, th.as_tensor(steps.log_probs, device=device)  # type: ignore[arg-type]
