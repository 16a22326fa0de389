"""
Check the shipped zoo config: train with ``sb3-reinforce-zoo train --algo reinforce`` (the packaged reinforce.yml,
its budget) on several seeds in parallel, then evaluate each *final* model on deterministic episodes (through the
run's saved ``VecNormalize`` statistics, frozen and without reward normalisation, where the entry has ``normalize``).

    python benchmarks/zoo_check.py --env CartPole-v1 --seeds 5
    python benchmarks/zoo_check.py --env Acrobot-v1 --seeds 5
    python benchmarks/zoo_check.py --env MountainCar-v0 --seeds 5 --json benchmarks/results/zoo_checks/MountainCar-v0.json
"""

import argparse
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run_one(job: tuple[str, int, int, str]) -> tuple[int, float]:
    env_id, seed, eval_episodes, folder = job
    command = [sys.executable, "-m", "sb3_reinforce.zoo", "train", "--algo", "reinforce", "--env", env_id,
               "--seed", str(seed), "-f", folder, "--eval-freq", "-1", "--num-threads", "1", "--verbose", "0"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)

    import torch as th
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_reinforce import REINFORCE

    th.set_num_threads(1)
    run = Path(folder) / "reinforce" / f"{env_id}_1"
    model = REINFORCE.load(run / f"{env_id}.zip", device="cpu")
    eval_env = make_vec_env(env_id, n_envs=1, seed=10_000 + seed)
    if (run / env_id / "vecnormalize.pkl").exists():
        eval_env = VecNormalize.load(str(run / env_id / "vecnormalize.pkl"), eval_env)
        eval_env.training, eval_env.norm_reward = False, False
    mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=eval_episodes, deterministic=True)
    return seed, float(mean_return)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=mp.cpu_count())
    parser.add_argument("--json", type=Path, help="also write the scores, the entry and the machine to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(args.env, seed, args.eval_episodes, str(Path(tmp) / f"seed{seed}")) for seed in range(args.seeds)]
        with mp.get_context("spawn").Pool(args.workers) as pool:
            scores = dict(pool.imap_unordered(run_one, jobs))
    ordered = [scores[seed] for seed in range(args.seeds)]
    print(f"{args.env} (shipped reinforce.yml), final policy, {args.eval_episodes} deterministic episodes per seed")
    print(f"median {statistics.median(ordered):.1f}, mean {statistics.mean(ordered):.1f}, per seed (0..): "
          + ", ".join(f"{s:.1f}" for s in ordered))  # fmt: skip
    if args.json is not None:
        from common import machine_info, write_json, zoo_entry

        summary = {"env": args.env, "eval_episodes": args.eval_episodes, "final_scores": ordered,
                   "median": statistics.median(ordered), "mean": statistics.mean(ordered),
                   "command": " ".join(["python", "benchmarks/zoo_check.py", *sys.argv[1:]]),
                   "zoo_entry": zoo_entry("reinforce", args.env), "machine": machine_info()}  # fmt: skip
        write_json(args.json, summary)


if __name__ == "__main__":
    main()
