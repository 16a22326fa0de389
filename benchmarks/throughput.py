"""
Env-steps per second of REINFORCE, A2C and PPO at the same ``n_envs`` / ``n_steps``, in one process and one torch
thread, plus "collect only" (REINFORCE's rollouts without training: the ceiling of any on-policy method). The machine
is shared and noisy: the algorithms are measured in interleaved rounds, the median of the rounds is reported, each
as a ratio to A2C measured in the same run. Then the cost of REINFORCE's non-finite checks of collected observations
and rewards, timed inside one training run (the loss and gradient checks run once per update and are left out).

    python benchmarks/throughput.py --json benchmarks/results/throughput.json   # the table of benchmarks/README.md
    python benchmarks/throughput.py --settings 4x128 --timesteps 40000 --rounds 5
"""

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch as th
from common import machine_info, write_json
from report import markdown, throughput_table
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_util import make_vec_env

from sb3_reinforce import REINFORCE
from sb3_reinforce.reinforce import buffers, checks

ALGOS = {
    "REINFORCE (baseline=mean)": (REINFORCE, {"baseline": "mean"}),
    "REINFORCE (baseline=value)": (REINFORCE, {"baseline": "value"}),
    "A2C": (A2C, {}),
    "PPO": (PPO, {}),  # batch_size: min(64, n_envs * n_steps), set by trainer()
    "collect only": (REINFORCE, {"baseline": "mean"}),
}
# What collect_rollouts calls: the first observation's check, and the whole rollout's after it (the rollout buffer's).
CHECKS = ((checks, "check_finite"), (buffers._EpisodeEndsMixin, "check_finite"))


def trainer(name: str, env_id: str, n_envs: int, n_steps: int) -> Callable[[int], float]:
    """A function that trains for ``timesteps`` steps (or only collects) and returns the env-steps per second."""
    algo, kwargs = ALGOS[name]
    kwargs = {**kwargs, "batch_size": min(64, n_envs * n_steps)} if algo is PPO else kwargs
    model = algo("MlpPolicy", make_vec_env(env_id, n_envs=n_envs, seed=0), n_steps=n_steps, seed=0, device="cpu", **kwargs)

    def run(timesteps: int) -> float:
        start = time.perf_counter()
        if name != "collect only":
            model.learn(timesteps)
            return model.num_timesteps / (time.perf_counter() - start)
        _, callback = model._setup_learn(timesteps)
        rollouts = max(1, timesteps // (n_envs * n_steps))
        start = time.perf_counter()
        for _ in range(rollouts):
            model.collect_rollouts(model.env, callback, model.rollout_buffer, n_steps)
        return rollouts * n_envs * n_steps / (time.perf_counter() - start)

    return run


def check_share(env_id: str, n_envs: int, n_steps: int, timesteps: int) -> float:
    """Share of one REINFORCE training run's time spent in the non-finite checks of collection."""
    originals = [(owner, name, getattr(owner, name)) for owner, name in CHECKS]
    spent = 0.0

    def timed(check: Callable[..., None]) -> Callable[..., None]:
        def run(*args: Any, **kwargs: Any) -> None:
            nonlocal spent
            start = time.perf_counter()
            check(*args, **kwargs)
            spent += time.perf_counter() - start

        return run

    model = REINFORCE("MlpPolicy", make_vec_env(env_id, n_envs=n_envs, seed=0), n_steps=n_steps, seed=0, device="cpu")
    model.learn(n_envs * n_steps)  # warm-up
    for owner, name, original in originals:
        setattr(owner, name, timed(original))
    try:
        start = time.perf_counter()
        model.learn(timesteps)
        return spent / (time.perf_counter() - start)
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--settings", nargs="+", default=["8x32", "1x512"], help="n_envs x n_steps")
    parser.add_argument("--timesteps", type=int, default=20_000, help="steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the rates and the machine to this file (read by benchmarks/report.py)")
    args = parser.parse_args()
    th.set_num_threads(1)

    print(f"{args.env}, 1 torch thread, {args.timesteps} steps per measurement, median of {args.rounds} rounds")
    measured = []
    for setting in args.settings:
        n_envs, n_steps = (int(x) for x in setting.split("x"))
        runs = {name: trainer(name, args.env, n_envs, n_steps) for name in ALGOS}
        for run in runs.values():  # warm-up
            run(n_envs * n_steps)
        rates: dict[str, list[float]] = {name: [] for name in ALGOS}
        for round_index in range(args.rounds):
            order = list(runs.items()) if round_index % 2 == 0 else list(reversed(runs.items()))  # nobody always first
            for name, run in order:
                rates[name].append(run(args.timesteps))
        medians = {name: statistics.median(values) for name, values in rates.items()}
        share = check_share(args.env, n_envs, n_steps, args.timesteps)
        measured.append({"n_envs": n_envs, "n_steps": n_steps, "median_steps_per_s": medians, "rounds_steps_per_s": rates,
                         "check_time_share": share})  # fmt: skip
    print("\n".join(markdown(throughput_table(measured))))
    if args.json:
        command = shlex.join(["python", "benchmarks/throughput.py", *sys.argv[1:]])
        write_json(args.json, {"env": args.env, "timesteps": args.timesteps, "rounds": args.rounds, "names": list(ALGOS),
                               "settings": measured, "machine": machine_info(), "command": command})  # fmt: skip


if __name__ == "__main__":
    main()
