"""
Memory kept alive by the held-over steps of ``incomplete_episodes="carry"``: the held arrays themselves, and the whole
blocks they are views into (until issue 14 they were views into the rollout buffer, which kept the old buffer alive).

4 envs with 4096-float observations, episodes of 90 steps, one rollout of ``n_steps=100``: 10 steps per env are held.

    python benchmarks/carry_memory.py
"""

import gc

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_reinforce import REINFORCE


class WideObservations(gym.Env):
    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (4096,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(4096, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(4096, np.float32), 1.0, self.t >= 90, False, {}


def owner(array: np.ndarray) -> np.ndarray:
    while array.base is not None:
        array = array.base
    return array


if __name__ == "__main__":
    th.set_num_threads(1)
    env = DummyVecEnv([WideObservations] * 4)
    model = REINFORCE("MlpPolicy", env, n_steps=100, baseline="none", seed=0, policy_kwargs=dict(net_arch=[8]))
    model.learn(400)
    arrays = [a for held in model._carry for a in (held.observations, held.actions, held.rewards, held.log_probs)]
    kept = {id(owner(a)): owner(a).nbytes for a in arrays}
    gc.collect()
    print(
        f"held-over steps: {sum(len(held) for held in model._carry)}, their arrays {sum(a.nbytes for a in arrays) / 2**20:.2f}"
        f" MiB, memory they keep alive {sum(kept.values()) / 2**20:.2f} MiB"
    )
