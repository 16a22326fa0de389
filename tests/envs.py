"""Tiny environments for the tests: each small enough to enumerate or to learn in seconds."""

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class TwoStepMDP(gym.Env):
    """
    State 0 --a0--> state 1 + a0 --a1--> end. Rewards: ``r0[a0]`` on the first step, ``r1[1 + a0][a1]`` on the second.

    The immediate reward favours a0 = 0, but the return favours a0 = 1: an estimator that weighs log-probabilities
    with per-step rewards instead of returns gets the sign of the first state's gradient wrong.
    """

    R0 = np.array([1.0, 0.0])
    R1 = {1: np.array([0.0, 0.0]), 2: np.array([3.0, 1.0])}

    def __init__(self, reward_shift: float = 0.0):
        self.observation_space = spaces.Discrete(3)
        self.action_space = spaces.Discrete(2)
        self.reward_shift = reward_shift
        self.state = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.state = 0
        return self.state, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        if self.state == 0:
            reward = self.R0[action]
            self.state = 1 + int(action)
            return self.state, float(reward + self.reward_shift), False, False, {}
        reward = self.R1[self.state][action]
        return 0, float(reward + self.reward_shift), True, False, {}


class MatchTargetEnv(gym.Env):
    """
    Fixed-horizon task: each step shows a target in {0, 1} (one-hot) and the fraction of the episode left; reward
    ``scale * [action == target] + shift``. Every episode has exactly ``horizon`` steps and ends with a terminal.
    """

    def __init__(self, horizon: int = 1, shift: float = 0.0, scale: float = 1.0):
        self.observation_space = spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.horizon, self.shift, self.scale = horizon, shift, scale
        self.t = 0
        self.target = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(3, dtype=np.float32)
        obs[self.target] = 1.0
        obs[2] = (self.horizon - self.t) / self.horizon
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        self.target = int(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        correct = float(int(action) == self.target)
        self.t += 1
        self.target = int(self.np_random.integers(2))
        return self._obs(), self.scale * correct + self.shift, self.t >= self.horizon, False, {"correct": correct}


class ContinuousTargetEnv(gym.Env):
    """One-step continuous task: observe a target in [-1, 1], reward ``-(action - target)^2``."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Box(-2.0, 2.0, shape=(1,), dtype=np.float32)
        self.target = np.zeros(1, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.target = self.np_random.uniform(-1.0, 1.0, size=1).astype(np.float32)
        return self.target.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = -float((np.asarray(action)[0] - self.target[0]) ** 2)
        return self.target.copy(), reward, True, False, {}


class CountingEnv(gym.Env):
    """
    Episodes of exactly ``length`` steps, reward 1 per step; the observation is the step index in the episode and
    the episode counter, so each step can be traced in a batch. ``truncate`` ends episodes by a time limit instead.
    """

    def __init__(self, length: int = 3, truncate: bool = False, reward: float = 1.0):
        self.observation_space = spaces.Box(0.0, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.length, self.truncate, self.reward = length, truncate, reward
        self.t = 0
        self.episode = -1

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        self.episode += 1
        return np.array([self.t, self.episode], dtype=np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        end = self.t >= self.length
        obs = np.array([self.t, self.episode], dtype=np.float32)
        return obs, self.reward, end and not self.truncate, end and self.truncate, {}


class BadValueEnv(CountingEnv):
    """A CountingEnv that emits ``bad`` (NaN, inf, ...) as its reward or observation at step ``at`` (env steps)."""

    def __init__(self, at: int, where: str = "reward", bad: float = float("nan"), length: int = 3):
        super().__init__(length=length)
        self.at, self.where, self.bad, self.calls = at, where, bad, 0

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        self.calls += 1
        if self.calls >= self.at:
            if self.where == "reward":
                reward = self.bad
            else:
                obs[0] = self.bad
        return obs, reward, terminated, truncated, info


class LateRewardBandit(gym.Env):
    """
    One-step episodes with a single observation; action 1 earns ``reward`` but only from episode ``first_paid`` on
    (1-based), action 0 never: a sparse reward whose first batches all return 0.
    """

    def __init__(self, first_paid: int = 17, reward: float = 1.0):
        self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.first_paid, self.reward, self.episode = first_paid, reward, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.episode += 1
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        paid = int(action) == 1 and self.episode >= self.first_paid
        return np.zeros(1, dtype=np.float32), self.reward if paid else 0.0, True, False, {}
