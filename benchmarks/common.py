"""
One training run as a task, and the result files. :func:`run_one` is a plain, picklable function that trains by
calling the zoo's command line in a subprocess and returns a JSON-ready dict, so any ``concurrent.futures.Executor``
can run it: a local process pool, or a Dask cluster (its workers need this folder on their ``PYTHONPATH`` and
``sb3-reinforce[benchmark]``; ``run.py --scheduler`` uploads this file). Standard library, numpy and PyYAML only.

The scoring rule, the same for REINFORCE, A2C and PPO: the zoo's EvalCallback evaluates the policy every
``eval_freq`` steps on ``eval_episodes`` deterministic episodes; a run's *final return* is the mean return of its last
evaluation, at the end of the budget.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS_DIR.parent
DEFAULT_RESULTS = BENCHMARKS_DIR / "results"
FOLDER_PLACEHOLDER = "LOGDIR"  # the temporary log folder, in recorded commands


def run_path(results: Path, spec: dict[str, Any]) -> Path:
    """``RESULTS/SUITE/ENV/NAME/seedS.json``: the result file of one run."""
    return Path(results, spec["suite"], spec["env"], spec["name"], f"seed{spec['seed']}.json")


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically, as the library saves a model (``save_file.atomic_write``)."""
    from sb3_reinforce.reinforce.save_file import atomic_write

    with atomic_write(Path(path)) as file:
        file.write((json.dumps(data, indent=1) + "\n").encode())


def read_json(path: Path) -> Any:
    with open(path) as file:
        return json.load(file)


def json_safe(value: Any) -> Any:
    """``value`` with what JSON cannot hold (yaml's python objects, ...) turned into strings."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def hyperparams_source(algo: str) -> str:
    """The yml the zoo reads for ``algo``, as installed (relative to site-packages): our reinforce.yml or rl_zoo3's."""
    return "sb3_reinforce/zoo/configs/reinforce.yml" if algo == "reinforce" else f"rl_zoo3/hyperparams/{algo}.yml"


def zoo_entry(algo: str, env: str, fallback: bool = True) -> dict[str, Any] | None:
    """
    The hyper-parameters the zoo would use for ``algo`` on ``env``: its yml entry, else (``fallback``, as the zoo does)
    the yml's ``default`` entry; None when there is neither.
    """
    if algo == "reinforce":
        from sb3_reinforce.zoo import default_config_path

        path = Path(default_config_path())
    else:
        package, _, rest = hyperparams_source(algo).partition("/")
        found = importlib.util.find_spec(package)  # without importing it
        if found is None or not found.submodule_search_locations:
            raise ModuleNotFoundError(f"{package} is not installed: pip install -e '.[benchmark]'")
        path = Path(next(iter(found.submodule_search_locations)), rest)
    with open(path) as file:
        entries = yaml.safe_load(file) or {}
    entry = entries.get(env, entries.get("default") if fallback else None)
    return json_safe(dict(entry)) if entry is not None else None


def machine_info() -> dict[str, Any]:
    """The machine a number was taken on: CPU model, cores, OS and the versions of the packages that matter."""
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.lower().startswith("model name")]
        cpu = names[0] if names else cpu
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("sb3-reinforce", "torch", "stable-baselines3", "rl_zoo3", "gymnasium", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "usable_cores": usable, "platform": platform.platform(),
            "versions": versions}  # fmt: skip


def zoo_command(spec: dict[str, Any], folder: str = FOLDER_PLACEHOLDER) -> list[str]:
    """The zoo command line of one run, as a user would type it (without the interpreter)."""
    command = ["-m", "sb3_reinforce.zoo", "train", "--algo", spec["algo"], "--env", spec["env"],
               "--seed", str(spec["seed"]), "-n", str(spec["budget"]), "--eval-freq", str(spec["eval_freq"]),
               "--eval-episodes", str(spec["eval_episodes"]), "--n-eval-envs", "1",
               "--num-threads", "1", "--device", "cpu", "-f", folder, "--verbose", "0"]  # fmt: skip
    if spec["overrides"]:  # the zoo evaluates the text after "name:" as Python
        command += ["--hyperparams", *(f"{key}:{value!r}" for key, value in spec["overrides"].items())]
    return command


def shell_command(spec: dict[str, Any]) -> str:
    """The zoo command of a run, ready to paste in a shell (``"baseline:'none'"`` kept readable)."""
    quoted = [
        f'"{arg}"' if shlex.quote(arg) != arg and not any(char in arg for char in '"$`\\!') else shlex.quote(arg)
        for arg in zoo_command(spec)
    ]
    return " ".join(["python", *quoted])


# The zoo runs in a child that dies with the process that started it (Linux's PR_SET_PDEATHSIG): a pool or Dask
# worker killed mid-run leaves no orphan training behind. ``python -c LAUNCHER PARENT_PID ZOO_ARGS...``
_LAUNCHER = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except (AttributeError, OSError):
    pass  # not Linux: no such guard
if os.getppid() != int(sys.argv[1]):
    sys.exit("the benchmark worker that started this run is gone")
from sb3_reinforce.zoo import main
main(sys.argv[2:])
"""


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """
    Train one run with the zoo's command line in a subprocess and return its evaluations.

    :param spec: ``suite``, ``env``, ``algo``, ``name``, ``seed``, ``budget``, ``overrides`` (``--hyperparams``),
        ``eval_freq``, ``eval_episodes`` and ``zoo_entry`` (the yml entry the runner planned with); other keys are kept.
    :return: A JSON-ready dict: the spec, the command, every evaluation, the final return, the hyper-parameters the
        zoo used, the wall time and the machine.
    :raises RuntimeError: When this machine's yml entry is not the planned one (a Dask worker with other versions
        would train something else than recorded), or the zoo fails (with the end of its output).
    """
    found = zoo_entry(spec["algo"], spec["env"])
    if found != spec["zoo_entry"]:
        raise RuntimeError(f"{hyperparams_source(spec['algo'])} on {socket.gethostname()} has another entry for "
                           f"{spec['env']} than the runner planned with: install the same versions everywhere")  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="sb3-reinforce-bench-") as tmp:
        command = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *zoo_command(spec, tmp)[2:]]
        start = time.perf_counter()
        process = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp)
        wall_time = time.perf_counter() - start
        if process.returncode != 0:
            output = (process.stdout + process.stderr)[-3000:]
            raise RuntimeError(f"{shell_command(spec)} failed with exit code {process.returncode}:\n{output}")
        runs = sorted(Path(tmp, spec["algo"]).glob(f"{spec['env']}_*"))
        if not runs or not (runs[-1] / "evaluations.npz").is_file():
            raise RuntimeError(f"{shell_command(spec)} wrote no evaluations.npz (is eval_freq above the budget?)")
        with np.load(runs[-1] / "evaluations.npz") as data:
            timesteps, returns = [int(t) for t in data["timesteps"]], np.asarray(data["results"], dtype=float)
        with open(next(runs[-1].glob("*/config.yml"))) as file:  # the OrderedDict dump the zoo just wrote
            hyperparams = json_safe(dict(yaml.load(file, Loader=yaml.UnsafeLoader)))
    return {
        "spec": spec,
        "command": shell_command(spec),
        "timesteps": timesteps,
        "eval_mean": returns.mean(axis=1).tolist(),
        "eval_returns": returns.tolist(),
        "final_timestep": timesteps[-1],
        "final_score": float(returns[-1].mean()),
        "hyperparams": hyperparams,
        "hyperparams_file": hyperparams_source(spec["algo"]),
        "wall_time_s": round(wall_time, 2),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }
