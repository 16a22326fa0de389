"""
Peak memory and throughput with long episodes, where ``incomplete_episodes="carry"`` holds steps over: REINFORCE at
its defaults beside A2C and ``"drop"``, and long episodes beside short ones. Each run is a subprocess (its own peak
RSS), one torch thread, on an env that costs nothing to step (zero observations, reward 1, no time limit), so what is
measured is the algorithm.

Scenarios (``SCENARIOS``), each run just past the first episode end of its longest episodes, so that the update on
everything held is in the run:

- ``long``: 64 envs, 100,000-step episodes, 4-float observations; REINFORCE's defaults and A2C's, and REINFORCE with
  smaller update chunks (``update_chunk_size=2048``, where the default 16,384 holds every shipped entry's batch).
- ``wide``: 16 envs, 1,024-float observations, 15,000-step episodes against 500-step ones (the same envs, observations
  and total steps); REINFORCE's defaults.
- ``images``: 84x84x1 uint8 images, ``CnnPolicy``, 8 envs, 5,000-step episodes; REINFORCE's defaults and ``"drop"``.

    python benchmarks/memory.py                      # every scenario (about 15 minutes), the table into memory.md
    python benchmarks/memory.py --scenarios images   # one of them
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "memory.md"

SCENARIOS: dict[str, dict[str, Any]] = {
    "long": {"n_envs": 64, "obs": [4], "dtype": "float32", "policy": "MlpPolicy", "episodes": [100_000]},
    "wide": {"n_envs": 16, "obs": [1024], "dtype": "float32", "policy": "MlpPolicy", "episodes": [15_000, 500]},
    "images": {"n_envs": 8, "obs": [84, 84, 1], "dtype": "uint8", "policy": "CnnPolicy", "episodes": [5_000]},
}
REFERENCE = {"long": ("a2c", 100_000), "wide": ("reinforce", 500), "images": ("reinforce drop", 5_000)}  # ratios' base
RUNS: dict[str, list[tuple[str, str, dict[str, Any]]]] = {  # (name, algorithm, its arguments besides the defaults)
    "long": [
        ("reinforce", "reinforce", {}),
        ("a2c", "a2c", {}),
        ("reinforce, 2048-step chunks", "reinforce", {"update_chunk_size": 2048}),
    ],
    "wide": [("reinforce", "reinforce", {})],
    "images": [("reinforce", "reinforce", {}), ("reinforce drop", "reinforce", {"incomplete_episodes": "drop"})],
}


def child(scenario: str, algo: str, kwargs: dict[str, Any], episode: int, total: int) -> dict[str, Any]:
    """One run, in this process: its peak RSS, steps per second and the most bytes REINFORCE held over."""
    import gymnasium as gym
    import numpy as np
    import torch as th
    from gymnasium import spaces
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sb3_reinforce import REINFORCE

    th.set_num_threads(1)
    setting = SCENARIOS[scenario]

    class Long(gym.Env):
        observation_space = spaces.Box(0, 255 if setting["dtype"] == "uint8" else 1, tuple(setting["obs"]), setting["dtype"])
        action_space = spaces.Discrete(2)

        def __init__(self) -> None:
            self.t, self.zeros = 0, np.zeros(self.observation_space.shape, self.observation_space.dtype)

        def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
            super().reset(seed=seed)
            self.t = 0
            return self.zeros, {}

        def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
            self.t += 1
            return self.zeros, 1.0, self.t >= episode, False, {}

    class HeldBytes(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.most = 0

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            if algo == "reinforce":
                self.most = max(self.most, self.model._held_over.nbytes)

    env = DummyVecEnv([Long] * setting["n_envs"])
    if algo == "a2c":
        model: Any = A2C(setting["policy"], env, seed=0, device="cpu", **kwargs)
    else:
        model = REINFORCE(setting["policy"], env, seed=0, device="cpu", **kwargs)
    held = HeldBytes()
    start = time.perf_counter()
    model.learn(total, callback=held)
    seconds = time.perf_counter() - start
    updates = model._n_updates
    return {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "steps_per_s": model.num_timesteps / seconds,
        "held_mb": held.most / 2**20,
        "updates": updates,
        "steps": model.num_timesteps,
    }


def run(scenario: str, algo: str, kwargs: dict[str, Any], episode: int, total: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", json.dumps([scenario, algo, kwargs, episode, total])]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--out", type=Path, help=f"write the table there too (default with every scenario: {OUT})")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*json.loads(args.child))))
        return
    out = args.out or (OUT if args.scenarios == list(SCENARIOS) else None)
    lines: list[str] = []

    def show(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    show("| scenario | run | episode | steps | updates | peak RSS (MB) | held (MB, most) | steps/s |")
    show("|---|---|---|---|---|---|---|---|")
    for scenario in args.scenarios:
        setting = SCENARIOS[scenario]
        longest = max(setting["episodes"])
        total = (longest + 512) * setting["n_envs"]  # past the first end of the longest episodes, and one rollout on
        results = {}
        for episode in setting["episodes"]:
            for name, algo, kwargs in RUNS[scenario]:
                result = results[(name, episode)] = run(scenario, algo, kwargs, episode, total)
                show(
                    f"| {scenario} | {name} | {episode:,} | {result['steps']:,} | {result['updates']} | "
                    f"{result['peak_rss_mb']:.0f} | {result['held_mb']:.1f} | {result['steps_per_s']:,.0f} |"
                )
        reference = results[REFERENCE[scenario]]
        for (name, episode), result in results.items():
            if (name, episode) != REFERENCE[scenario]:
                show(
                    f"| {scenario} | ratio {name} ({episode:,}) / {REFERENCE[scenario][0]} ({REFERENCE[scenario][1]:,}) "
                    f"| | | | {result['peak_rss_mb'] / reference['peak_rss_mb']:.2f} | | "
                    f"{result['steps_per_s'] / reference['steps_per_s']:.2f} |"
                )
    if out is not None:
        import platform

        header = [
            "# Memory and throughput with long episodes",
            "",
            f"Written by `python benchmarks/memory.py` ({platform.processor() or platform.machine()}, one torch thread per "
            "run; the scenarios are in its docstring). Peak RSS is the whole process's (Python and torch included).",
            "",
        ]
        out.write_text("\n".join([*header, *lines]) + "\n")


if __name__ == "__main__":
    main()
