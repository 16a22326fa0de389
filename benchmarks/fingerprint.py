"""
Fingerprints of training, for refactors that must change no number: the parameters (and running return moments)
after a few updates with a fixed seed on CPU, one sha256 per configuration (every baseline x incomplete_episodes on
CartPole and on Pendulum, whose time limit truncates episodes; action_prob_floor; min_std; gSDE; a Dict-observation
env; a Box-action env with a carry cap). Run it before and after a change and diff the outputs; it is not a test
(digests differ across torch versions and machines).

    python benchmarks/fingerprint.py > before.txt   # ... change the code ...
    python benchmarks/fingerprint.py | diff before.txt -
"""

import hashlib
import itertools

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env

from sb3_reinforce import REINFORCE


class DictEnv(gym.Env):
    def __init__(self):
        self.observation_space = spaces.Dict({"a": spaces.Box(-1, 1, (3,), np.float32), "b": spaces.Discrete(4)})
        self.action_space = spaces.Discrete(3)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return {"a": self.np_random.uniform(-1, 1, 3).astype(np.float32), "b": int(self.np_random.integers(4))}

    def step(self, a):
        self.t += 1
        return self._obs(), float(a == 1), self.t >= 7, False, {}


def digest(model):
    h = hashlib.sha256()
    for name, p in sorted(model.policy.state_dict().items()):
        h.update(name.encode())
        h.update(p.cpu().numpy().tobytes())
    h.update(repr(model._return_moments).encode())
    return h.hexdigest()[:20]


def run(env_id, steps=1536, n_envs=2, **kw):
    env = make_vec_env(env_id, n_envs=n_envs, seed=0)
    m = REINFORCE("MultiInputPolicy" if env_id is DictEnv else "MlpPolicy", env, n_steps=64, seed=0, **kw)
    m.learn(steps)
    return digest(m)


def main() -> None:
    rows = []
    for baseline, inc in itertools.product(["none", "mean", "value"], ["carry", "drop", "bootstrap"]):
        if inc == "bootstrap" and baseline != "value":
            continue
        rows.append((f"CartPole {baseline}/{inc}", run("CartPole-v1", baseline=baseline, incomplete_episodes=inc)))
        rows.append(
            (
                f"Pendulum(truncation) {baseline}/{inc}",
                run("Pendulum-v1", steps=1024, baseline=baseline, incomplete_episodes=inc, normalize_advantage=True),
            )
        )
    rows.append(("CartPole action_prob_floor", run("CartPole-v1", policy_kwargs=dict(action_prob_floor=0.1))))
    rows.append(("Pendulum min_std", run("Pendulum-v1", steps=1024, policy_kwargs=dict(min_std=0.2))))
    rows.append(("Pendulum gSDE", run("Pendulum-v1", steps=1024, use_sde=True, sde_sample_freq=4)))
    rows.append(("Dict obs", run(DictEnv)))
    rows.append(("MultiDiscrete-free Box action carry cap", run("MountainCarContinuous-v0", steps=1024, carry_max_steps=50)))
    for name, d in rows:
        print(f"{name:45s} {d}")


if __name__ == "__main__":
    th.set_num_threads(1)
    main()
