"""
Env-steps per second of REINFORCE, A2C and PPO at the same ``n_envs`` / ``n_steps``, in one process and one torch
thread, plus the collect-only rate (REINFORCE's rollouts: policy forward, sampling, env step, buffer; no training),
which bounds every on-policy algorithm from above.

The machine is shared and noisy, so the algorithms are measured in interleaved rounds and the median of the rounds
is reported, with each rate as a ratio to A2C's measured in the same run.

    python benchmarks/throughput.py                      # CartPole-v1, 8 envs x 32 steps and 1 env x 512 steps
    python benchmarks/throughput.py --settings 4x128 --timesteps 40000 --rounds 5
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch as th
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_util import make_vec_env

from sb3_reinforce import REINFORCE


def trainer(name: str, env_id: str, n_envs: int, n_steps: int) -> Callable[[int], float]:
    """A function that trains for ``timesteps`` steps (or only collects) and returns the env-steps per second."""
    env = make_vec_env(env_id, n_envs=n_envs, seed=0)
    algo, kwargs = {
        "REINFORCE (baseline=mean)": (REINFORCE, dict(baseline="mean")),
        "REINFORCE (baseline=value)": (REINFORCE, dict(baseline="value")),
        "A2C": (A2C, {}),
        "PPO": (PPO, dict(batch_size=min(64, n_envs * n_steps))),
        "collect only": (REINFORCE, dict(baseline="mean")),
    }[name]
    model = algo("MlpPolicy", env, n_steps=n_steps, seed=0, device="cpu", **kwargs)

    def run(timesteps: int) -> float:
        if name == "collect only":
            _, callback = model._setup_learn(timesteps)
            start = time.perf_counter()
            for _ in range(max(1, timesteps // (n_envs * n_steps))):
                model.collect_rollouts(model.env, callback, model.rollout_buffer, n_steps)
            return (timesteps // (n_envs * n_steps)) * n_envs * n_steps / (time.perf_counter() - start)
        start = time.perf_counter()
        model.learn(timesteps)
        return model.num_timesteps / (time.perf_counter() - start)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--settings", nargs="+", default=["8x32", "1x512"], help="n_envs x n_steps")
    parser.add_argument("--timesteps", type=int, default=20_000, help="steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    th.set_num_threads(1)

    names = ["REINFORCE (baseline=mean)", "REINFORCE (baseline=value)", "A2C", "PPO", "collect only"]
    print(f"{args.env}, 1 torch thread, {args.timesteps} steps per measurement, median of {args.rounds} rounds\n")
    print("| n_envs x n_steps | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for setting in args.settings:
        n_envs, n_steps = (int(x) for x in setting.split("x"))
        runs = {name: trainer(name, args.env, n_envs, n_steps) for name in names}
        for run in runs.values():  # warm-up
            run(n_envs * n_steps)
        rates: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.rounds):
            for name, run in runs.items():
                rates[name].append(run(args.timesteps))
        medians = {name: statistics.median(values) for name, values in rates.items()}
        cells = [f"{medians[name]:,.0f} ({medians[name] / medians['A2C']:.2f}x A2C)" for name in names]
        print(f"| {n_envs} x {n_steps} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
