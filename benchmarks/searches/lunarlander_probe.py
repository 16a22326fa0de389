"""
A measurement, not a feature: what a LunarLander-v3 policy does when its deterministic evaluation ends near 0.

Some seeds of the shipped entry (and of its variants) evaluate at about 200, then fall to about 0 and stay there
(issue 18: every seed at 200). This plays saved models (the zoo's final ``LunarLander-v3.zip`` and its
``rl_model_*_steps.zip`` checkpoints, written with ``--save-freq``) with the policy's most likely action
(``deterministic=True``, as the benchmark scores) and with sampled actions (as the policy is trained), and prints per
model and mode: the mean return and episode length, how many episodes hit the 1000-step time limit, the mean number
of legs on the ground when the episode ends, the actions taken over the last 200 steps of the time-limited episodes
(noop, left engine, main engine, right engine; counts summed over those episodes) and the policy's action
probabilities at their last state (averaged)::

    python -m sb3_reinforce.zoo train --algo reinforce --env LunarLander-v3 --seed 3 -n 1000000 --eval-freq 40000 \
        --eval-episodes 10 --n-eval-envs 1 --num-threads 1 --device cpu -f LOGDIR --save-freq 40000
    python benchmarks/searches/lunarlander_probe.py LOGDIR --steps 800000 840000 1001472

Result: ``README.md`` of this folder, LunarLander section.
"""

import argparse
import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

from sb3_reinforce import REINFORCE

TAIL = 200  # the actions counted at the end of a time-limited episode


def model_files(folder: Path) -> dict[int, Path]:
    """The saved models under ``folder``, by the step they were saved at (the final model: its ``num_timesteps``)."""
    checkpoints = folder.rglob("rl_model_*_steps.zip")
    files = {int(m.group(1)): path for path in checkpoints if (m := re.search(r"_(\d+)_steps", path.name))}
    for path in folder.rglob("LunarLander-v3.zip"):
        files.setdefault(int(REINFORCE.load(path, device="cpu").num_timesteps), path)
    return dict(sorted(files.items()))


def play(model: Any, deterministic: bool, episodes: int, seed: int, time_limit: int = 1000) -> dict[str, Any]:
    """
    Play ``episodes`` episodes (env seeds ``seed``, ``seed + 1``, ...) and summarise them (see the module docstring).

    :param time_limit: The episode's step limit (LunarLander-v3's own: 1000)
    """
    env = gym.make("LunarLander-v3", max_episode_steps=time_limit)
    returns, lengths, legs, tail_actions, last_probs = [], [], [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        actions, total, done = [], 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=deterministic)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            actions.append(int(action))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        lengths.append(len(actions))
        legs.append(float(obs[6] + obs[7]))
        if len(actions) == time_limit:
            tail_actions.append(np.bincount(actions[-TAIL:], minlength=4))
            with th.no_grad():
                distribution = model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0])
                last_probs.append(distribution.distribution.probs.cpu().numpy()[0])
    env.close()
    return {
        "return": round(float(np.mean(returns)), 1),
        "length": round(float(np.mean(lengths))),
        "time_limited": sum(length == time_limit for length in lengths),
        "legs": round(float(np.mean(legs)), 2),
        "tail_actions": np.sum(tail_actions, axis=0).tolist() if tail_actions else None,
        "last_probs": np.round(np.mean(last_probs, axis=0, dtype=np.float64), 2).tolist() if last_probs else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a zoo log folder (-f) with saved models")
    parser.add_argument("--steps", type=int, nargs="*", help="only the models saved at these steps")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1000, help="env seed of the first episode")
    args = parser.parse_args()
    th.set_num_threads(1)
    for step, path in model_files(args.folder).items():
        if args.steps and step not in args.steps:
            continue
        model = REINFORCE.load(path, device="cpu")
        for deterministic in (True, False):
            summary = play(model, deterministic, args.episodes, args.seed)
            mode = "deterministic" if deterministic else "sampled"
            print(f"{step} {mode}: " + ", ".join(f"{key} {value}" for key, value in summary.items()), flush=True)


if __name__ == "__main__":
    main()
