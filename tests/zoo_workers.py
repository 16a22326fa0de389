"""The zoo's command line as the tests run it: one command (``zoo``), and one worker of a tiny REINFORCE search."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def zoo(command: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m sb3_reinforce.zoo COMMAND`` in ``cwd``; with ``check``, fail on a non-zero exit."""
    args = [sys.executable, "-m", "sb3_reinforce.zoo", *shlex.split(command)]
    result = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


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
