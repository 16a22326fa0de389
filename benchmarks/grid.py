"""
Train REINFORCE (or A2C/PPO) over a grid of hyper-parameters and seeds in parallel; print a markdown table.

Each run trains for ``--timesteps`` steps, then evaluates the *final* policy (not the best seen) on
``--eval-episodes`` deterministic episodes. Runs are spread over ``--workers`` processes, one torch thread each.

Examples (the numbers in the README come from these commands)::

    python benchmarks/grid.py --grid defaults --env CartPole-v1 --timesteps 100000 --seeds 5
    python benchmarks/grid.py --grid incomplete --env CartPole-v1 --timesteps 100000 --seeds 5
    python benchmarks/grid.py --grid incomplete --env Acrobot-v1 --timesteps 100000 --seeds 3
    python benchmarks/grid.py --grid eight_envs --env CartPole-v1 --timesteps 100000 --seeds 5
    python benchmarks/grid.py --grid acrobot --env Acrobot-v1 --timesteps 500000 --seeds 3
"""

import argparse
import json
import multiprocessing as mp
import statistics
import time
from typing import Any

# name -> (algorithm, n_envs, hyper-parameters)
GRIDS: dict[str, dict[str, tuple[str, int, dict[str, Any]]]] = {
    "defaults": {"REINFORCE defaults, 1 env": ("reinforce", 1, {})},
    "eight_envs": {
        f"8 envs, n_steps {n_steps}, lr {lr}, {baseline}, normalize {normalize}": (
            "reinforce",
            8,
            {"n_steps": n_steps, "learning_rate": lr, "baseline": baseline, "normalize_advantage": normalize},
        )
        for baseline, normalize, n_steps, lr in (
            ("value", False, 32, 3e-3),
            ("value", False, 128, 3e-3),
            ("value", False, 32, 1e-3),
            ("mean", True, 32, 3e-3),
            ("mean", True, 64, 3e-3),
            ("mean", True, 128, 3e-3),
            ("mean", True, 64, 1e-3),
        )
    },
    "acrobot": {
        f"8 envs, n_steps {n_steps}, lr {lr}": ("reinforce", 8, {"n_steps": n_steps, "learning_rate": lr})
        for n_steps, lr in ((64, 1e-3), (128, 1e-3))
    },
    "incomplete": {
        f"{mode} / {baseline}": ("reinforce", 1, {"incomplete_episodes": mode, "baseline": baseline})
        for mode in ("carry", "drop", "bootstrap")
        for baseline in ("value", "mean", "none")
        if mode != "bootstrap" or baseline == "value"
    },
}


def run_one(job: tuple[str, str, int, dict[str, Any], str, int, int, int]) -> tuple[str, int, float, float]:
    name, algo, n_envs, kwargs, env_id, timesteps, seed, eval_episodes = job
    import torch as th

    th.set_num_threads(1)
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    from sb3_reinforce import REINFORCE

    algo_class = {"reinforce": REINFORCE, "a2c": A2C, "ppo": PPO}[algo]
    start = time.perf_counter()
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    model = algo_class("MlpPolicy", env, seed=seed, device="cpu", **kwargs)
    model.learn(timesteps)
    eval_env = make_vec_env(env_id, n_envs=1, seed=10_000 + seed)
    mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=eval_episodes, deterministic=True)
    return name, seed, float(mean_return), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", choices=sorted(GRIDS), required=True)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=mp.cpu_count())
    parser.add_argument("--set", default="{}", help="JSON dict of hyper-parameters applied to every REINFORCE run")
    parser.add_argument("--json", help="also write the per-seed results to this file")
    parser.add_argument("--only", nargs="+", help="run only these settings of the grid (default: all)")
    args = parser.parse_args()
    grid = {name: setting for name, setting in GRIDS[args.grid].items() if args.only is None or name in args.only}
    if not grid:
        parser.error(f"--only matches no setting of {args.grid}: {', '.join(GRIDS[args.grid])}")

    extra = json.loads(args.set)
    jobs = [
        (name, algo, n_envs, {**kwargs, **extra}, args.env, args.timesteps, seed, args.eval_episodes)
        for name, (algo, n_envs, kwargs) in grid.items()
        for seed in range(args.seeds)
    ]
    results: dict[str, list[float]] = {name: [] for name in grid}
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for name, seed, score, seconds in pool.imap_unordered(run_one, jobs):
            print(f"  {name} seed {seed}: {score:.1f} ({seconds:.0f} s)", flush=True)
            results[name].append(score)

    print(f"\n{args.env}, {args.timesteps} steps, {args.seeds} seeds, final policy, {args.eval_episodes} det. episodes")
    print(f"extra hyper-parameters: {extra}\n")
    print("| setting | median | mean | min | max | per seed |")
    print("|---|---|---|---|---|---|")
    for name, scores in results.items():
        scores.sort()
        print(
            f"| {name} | {statistics.median(scores):.1f} | {statistics.mean(scores):.1f} | {min(scores):.1f} | "
            f"{max(scores):.1f} | {', '.join(f'{s:.0f}' for s in scores)} |"
        )
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"env": args.env, "timesteps": args.timesteps, "extra": extra, "results": results}, file, indent=1)


if __name__ == "__main__":
    main()
