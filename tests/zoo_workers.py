"""The command line of one worker of a tiny REINFORCE search, shared by the zoo and scale-out tests."""

import shlex
import sys


def search_command(storage: str, study: str, seed: int, timesteps: int = 1024) -> list[str]:
    """
    ``python -m sb3_reinforce.zoo train -optimize`` on CartPole: short random-sampler trials of ``timesteps`` steps,
    one evaluation of 2 episodes, no pruning, logs under ``logs/`` of the working directory.
    """
    command = (
        f"train --algo reinforce --env CartPole-v1 -n {timesteps} -optimize --n-jobs 1 --sampler random --pruner none "
        f"--n-evaluations 1 --eval-episodes 2 --storage {storage} --study-name {study} -f logs --num-threads 1 "
        f"--seed {seed} --no-optim-plots"
    )
    return [sys.executable, "-m", "sb3_reinforce.zoo", *shlex.split(command)]
