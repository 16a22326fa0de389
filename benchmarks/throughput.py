"""
Env-steps per second of REINFORCE, A2C and PPO at the same ``n_envs`` / ``n_steps``, in one process and one torch
thread, plus the collect-only rate (REINFORCE's rollouts: policy forward, sampling, env step, buffer; no training),
which bounds every on-policy algorithm from above.

The machine is shared and noisy, so the algorithms are measured in interleaved rounds and the median of the rounds
is reported, with each rate as a ratio to A2C's measured in the same run.

    python benchmarks/throughput.py                      # CartPole-v1, 8 envs x 32 steps and 1 env x 512 steps
    python benchmarks/throughput.py --settings 4x128 --timesteps 40000 --rounds 5
    python benchmarks/throughput.py --json benchmarks/results/throughput.json   # the table of benchmarks/README.md

The cost of REINFORCE's non-finite guards (observation and reward checks once per rollout, loss and gradient checks
before every optimizer step): "REINFORCE (no guards)" is the default REINFORCE (baseline=value) with the collection
checks removed and no loss/gradient checks; the script also times the collection checks inside one run.

    python benchmarks/throughput.py --algos "REINFORCE (baseline=value)" "REINFORCE (no guards)" A2C --rounds 11 \
        --settings 8x32 1x512 --timesteps 20000 --json benchmarks/results/guard_cost.json
"""

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable

import torch as th
from common import machine_info, write_json
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_util import make_vec_env

from sb3_reinforce import REINFORCE
from sb3_reinforce.reinforce import reinforce as reinforce_module

ALGOS = ["REINFORCE (baseline=mean)", "REINFORCE (baseline=value)", "A2C", "PPO", "collect only", "REINFORCE (no guards)"]


class UnguardedREINFORCE(REINFORCE):
    """REINFORCE without its non-finite checks: the "before" of the guards' cost, for this benchmark only."""

    def collect_rollouts(self, *args, **kwargs) -> bool:  # type: ignore[no-untyped-def]
        checks = ("check_finite", "check_finite_rollout")
        originals = {name: getattr(reinforce_module, name) for name in checks}
        for name in checks:
            setattr(reinforce_module, name, lambda *_, **__: None)
        try:
            return super().collect_rollouts(*args, **kwargs)
        finally:
            for name, original in originals.items():
                setattr(reinforce_module, name, original)

    def _gradient_step(self, loss: th.Tensor) -> float:
        self.policy.optimizer.zero_grad()
        loss.backward()
        max_norm = float("inf") if self.max_grad_norm is None else self.max_grad_norm
        grad_norm = float(th.nn.utils.clip_grad_norm_(self.policy.parameters(), max_norm))
        self.policy.optimizer.step()
        return grad_norm


def trainer(name: str, env_id: str, n_envs: int, n_steps: int) -> Callable[[int], float]:
    """A function that trains for ``timesteps`` steps (or only collects) and returns the env-steps per second."""
    env = make_vec_env(env_id, n_envs=n_envs, seed=0)
    algo, kwargs = {
        "REINFORCE (baseline=mean)": (REINFORCE, dict(baseline="mean")),
        "REINFORCE (baseline=value)": (REINFORCE, dict(baseline="value")),
        "A2C": (A2C, {}),
        "PPO": (PPO, dict(batch_size=min(64, n_envs * n_steps))),
        "collect only": (REINFORCE, dict(baseline="mean")),
        "REINFORCE (no guards)": (UnguardedREINFORCE, dict(baseline="value")),
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


def guard_share(env_id: str, n_envs: int, n_steps: int, timesteps: int) -> float:
    """
    Share of REINFORCE's training time spent in the non-finite checks of collection (observations and rewards, checked
    once per rollout), timed inside one run, so that the machine's noise affects both sides alike. The loss and
    gradient checks run once per update and are left out.
    """
    checks = ("check_finite", "check_finite_rollout")
    originals = {name: getattr(reinforce_module, name) for name in checks}
    spent = 0.0

    def timed(check: Callable[..., None]) -> Callable[..., None]:
        def run(*args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            nonlocal spent
            start = time.perf_counter()
            check(*args, **kwargs)
            spent += time.perf_counter() - start

        return run

    model = REINFORCE("MlpPolicy", make_vec_env(env_id, n_envs=n_envs, seed=0), n_steps=n_steps, seed=0, device="cpu")
    model.learn(n_envs * n_steps)  # warm-up
    for name in checks:
        setattr(reinforce_module, name, timed(originals[name]))
    try:
        start = time.perf_counter()
        model.learn(timesteps)
        total = time.perf_counter() - start
    finally:
        for name, original in originals.items():
            setattr(reinforce_module, name, original)
    return spent / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--settings", nargs="+", default=["8x32", "1x512"], help="n_envs x n_steps")
    parser.add_argument("--timesteps", type=int, default=20_000, help="steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--algos", nargs="+", default=ALGOS, choices=ALGOS, help="columns (A2C is always measured)")
    parser.add_argument("--json", help="also write the rates and the machine to this file (read by benchmarks/report.py)")
    args = parser.parse_args()
    th.set_num_threads(1)

    names = args.algos if "A2C" in args.algos else [*args.algos, "A2C"]
    print(f"{args.env}, 1 torch thread, {args.timesteps} steps per measurement, median of {args.rounds} rounds\n")
    print("| n_envs x n_steps | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    guard_costs: list[str] = []
    measured: list[dict] = []
    for setting in args.settings:
        n_envs, n_steps = (int(x) for x in setting.split("x"))
        runs = {name: trainer(name, args.env, n_envs, n_steps) for name in names}
        for run in runs.values():  # warm-up
            run(n_envs * n_steps)
        rates: dict[str, list[float]] = {name: [] for name in names}
        for round_index in range(args.rounds):
            order = list(runs.items())
            for name, run in order if round_index % 2 == 0 else reversed(order):  # no algorithm always goes first
                rates[name].append(run(args.timesteps))
        medians = {name: statistics.median(values) for name, values in rates.items()}
        cells = [f"{medians[name]:,.0f} ({medians[name] / medians['A2C']:.2f}x A2C)" for name in names]
        print(f"| {n_envs} x {n_steps} | " + " | ".join(cells) + " |", flush=True)
        measured.append({"n_envs": n_envs, "n_steps": n_steps, "median_steps_per_s": medians, "rounds_steps_per_s": rates})
        guarded, unguarded = rates.get("REINFORCE (baseline=value)"), rates.get("REINFORCE (no guards)")
        if guarded and unguarded:
            # Paired by round (measured back to back), then the median: robust to the machine's slow phases.
            ratios = sorted(g / u for g, u in zip(guarded, unguarded, strict=True))
            share = guard_share(args.env, n_envs, n_steps, args.timesteps)
            measured[-1]["guard_cost_paired_median"] = 1 - statistics.median(ratios)
            measured[-1]["guard_time_share"] = share
            guard_costs.append(
                f"{n_envs} x {n_steps}: with / without guards, paired by round: cost {1 - statistics.median(ratios):+.1%} "
                f"of throughput (per-round from {1 - ratios[-1]:+.1%} to {1 - ratios[0]:+.1%}); timed inside one run: "
                f"the per-step checks take {share:.2%} of the training time"
            )
    for line in guard_costs:
        print(line)
    if args.json:
        command = shlex.join(["python", "benchmarks/throughput.py", *sys.argv[1:]])
        write_json(args.json, {"env": args.env, "timesteps": args.timesteps, "rounds": args.rounds, "names": names,
                               "settings": measured, "machine": machine_info(), "command": command})  # fmt: skip


if __name__ == "__main__":
    main()
