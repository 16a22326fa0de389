"""
Shared pieces of ``benchmarks/run.py`` and ``benchmarks/report.py``: one training run as a task (:func:`run_one`),
where its result file lives, atomic JSON writes, the machine description, and the zoo's hyper-parameter files.

This module imports only the standard library, numpy and PyYAML, so a task is cheap to ship to another process or
machine: ``run_one(spec)`` is a plain, picklable, module-level function that trains by calling the zoo's command line
in a subprocess and returns a JSON-ready dict. It can be given to any ``concurrent.futures.Executor``
(a ``ProcessPoolExecutor``, or a Dask cluster through ``distributed.Client(...).get_executor()``, whose workers then
need this directory on their ``PYTHONPATH`` and ``sb3-reinforce[benchmark]`` installed).
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
SUITES = ("main", "ablation")

# The keys of a run's spec that define it: a result file whose spec differs in any of them is stale and is redone.
IDENTITY_KEYS = (
    "suite",
    "env",
    "algo",
    "name",
    "seed",
    "budget",
    "overrides",
    "zoo_entry",
    "eval_freq",
    "eval_episodes",
    "n_eval_envs",
    "device",
)
# Placeholder for the temporary log folder in the recorded command.
FOLDER_PLACEHOLDER = "LOGDIR"


def run_dir(results: Path, suite: str, env: str, name: str) -> Path:
    """Folder of the result files of one algorithm (main suite) or variant (ablation) on one env."""
    return Path(results) / suite / env / name


def run_path(results: Path, spec: dict[str, Any]) -> Path:
    """The result file of the run described by ``spec``."""
    return run_dir(results, spec["suite"], spec["env"], spec["name"]) / f"seed{spec['seed']}.json"


def skipped_path(results: Path, suite: str, env: str, name: str) -> Path:
    """File recording why the runs of an algorithm or variant were not started (e.g. no hyper-parameters)."""
    return run_dir(results, suite, env, name) / "skipped.json"


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically: a temporary file in the same folder, then ``os.replace`` (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (:func:`write_text`)."""
    write_text(path, json.dumps(data, indent=1) + "\n")


def read_json(path: Path) -> Any:
    with open(path) as file:
        return json.load(file)


def identity(spec: dict[str, Any]) -> dict[str, Any]:
    """The identity keys of a spec, normalised through JSON (tuples become lists, ...) so they compare with a file."""
    return json.loads(json.dumps({key: spec.get(key) for key in IDENTITY_KEYS}))


def is_done(results: Path, spec: dict[str, Any]) -> bool:
    """Whether a result file exists for ``spec`` with the same identity (budget, overrides, eval settings, ...)."""
    path = run_path(results, spec)
    if not path.is_file():
        return False
    try:
        recorded = read_json(path)["spec"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return identity(recorded) == identity(spec)


def _package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it (importing sb3_reinforce would import torch)."""
    found = importlib.util.find_spec(name)
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(f"{name} is not installed: pip install -e '.[benchmark]'")
    return Path(next(iter(found.submodule_search_locations)))


def hyperparams_file(algo: str) -> Path:
    """The yml the zoo reads for ``algo``: our packaged reinforce.yml, or rl_zoo3's own ``hyperparams/{algo}.yml``."""
    if algo == "reinforce":
        return _package_dir("sb3_reinforce") / "zoo" / "configs" / "reinforce.yml"
    return _package_dir("rl_zoo3") / "hyperparams" / f"{algo}.yml"


def hyperparams_source(algo: str) -> str:
    """:func:`hyperparams_file` relative to its installed package, as recorded in the result files."""
    package = "sb3_reinforce" if algo == "reinforce" else "rl_zoo3"
    return f"{package}/{hyperparams_file(algo).relative_to(_package_dir(package)).as_posix()}"


def zoo_entry(algo: str, env: str) -> dict[str, Any] | None:
    """The hyper-parameters the zoo would use for ``algo`` on ``env`` (its yml entry), or None when it has none."""
    with open(hyperparams_file(algo)) as file:
        entries = yaml.safe_load(file) or {}
    entry = entries.get(env, entries.get("default"))
    return dict(entry) if entry is not None else None


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("sb3-reinforce", "torch", "stable-baselines3", "rl_zoo3", "gymnasium", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """The machine a number was taken on: CPU model, cores, OS and the versions of the packages that matter."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "versions": _versions(),
    }


def hyperparams_arg(key: str, value: Any) -> str:
    """One ``--hyperparams`` item: the zoo evaluates the text after ``name:`` as Python, so pass ``repr(value)``."""
    return f"{key}:{value!r}"


def zoo_command(spec: dict[str, Any], folder: str = FOLDER_PLACEHOLDER) -> list[str]:
    """The zoo command line of one run, as a user would type it (without the interpreter)."""
    command = ["-m", "sb3_reinforce.zoo", "train", "--algo", spec["algo"], "--env", spec["env"],
               "--seed", str(spec["seed"]), "-n", str(spec["budget"]), "--eval-freq", str(spec["eval_freq"]),
               "--eval-episodes", str(spec["eval_episodes"]), "--n-eval-envs", str(spec["n_eval_envs"]),
               "--num-threads", "1", "--device", spec["device"], "-f", folder, "--verbose", "0"]  # fmt: skip
    if spec["overrides"]:
        command += ["--hyperparams", *(hyperparams_arg(key, value) for key, value in spec["overrides"].items())]
    return command


def _quote(arg: str) -> str:
    """Shell quoting that keeps ``"baseline:'none'"`` readable (``shlex.quote`` would write ``'baseline:'"'"'none'...``)."""
    if shlex.quote(arg) == arg or any(char in arg for char in '"$`\\!'):
        return shlex.quote(arg)
    return f'"{arg}"'


def shell_command(spec: dict[str, Any]) -> str:
    """The zoo command of a run, ready to paste in a shell."""
    return " ".join(["python", *map(_quote, zoo_command(spec))])


def json_safe(value: Any) -> Any:
    """``value`` with what JSON cannot hold (yaml's python objects, ...) turned into strings."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _saved_hyperparams(folder: Path) -> dict[str, Any]:
    """The hyper-parameters the zoo saved in ``config.yml`` (an OrderedDict dump we wrote ourselves a moment ago)."""
    for path in folder.glob("*/config.yml"):
        with open(path) as file:
            return json_safe(dict(yaml.load(file, Loader=yaml.UnsafeLoader)))
    return {}


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


def check_zoo_entry(spec: dict[str, Any]) -> None:
    """
    Refuse to train when this machine's yml entry differs from the one the runner planned with (``spec["zoo_entry"]``):
    a Dask worker with another version of sb3-reinforce or rl_zoo3 would otherwise train something else than recorded.
    """
    expected = spec.get("zoo_entry")
    if expected is None:
        return
    found = zoo_entry(spec["algo"], spec["env"])
    if json_safe(found) != expected:
        raise RuntimeError(
            f"{hyperparams_source(spec['algo'])} on {socket.gethostname()} has another entry for {spec['env']} than the "
            f"runner planned with ({found} != {expected}): install the same sb3-reinforce and rl_zoo3 on every worker"
        )


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """
    Train one run with the zoo's command line in a subprocess and return its evaluations.

    The zoo's EvalCallback evaluates every ``eval_freq`` steps (rl_zoo3 divides ``eval_freq`` by ``n_envs``, so the
    points fall on multiples of ``n_envs``) on ``eval_episodes`` deterministic episodes and writes
    ``LOGDIR/ALGO/ENV_1/evaluations.npz`` (``timesteps``, ``results`` per episode); the score of the run is the
    mean return of the last evaluation.

    :param spec: ``suite``, ``env``, ``algo``, ``name``, ``seed``, ``budget``, ``overrides`` (``--hyperparams``),
        ``eval_freq``, ``eval_episodes``, ``n_eval_envs``, ``device``; other keys (``zoo_entry``: the yml entry the
        zoo is expected to read, part of the identity so that a changed yml is rerun) are kept as they are.
    :return: A JSON-ready dict: the spec, the command, the evaluations, the final score, the hyper-parameters the
        zoo used, the wall time and the machine.
    :raises RuntimeError: When the zoo fails (with the end of its output), or this machine's yml entry is not the
        planned one (:func:`check_zoo_entry`).
    """
    check_zoo_entry(spec)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="sb3-reinforce-bench-") as tmp:
        zoo_args = zoo_command(spec, tmp)
        assert zoo_args[:2] == ["-m", "sb3_reinforce.zoo"]
        command = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *zoo_args[2:]]
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
            timesteps = [int(t) for t in data["timesteps"]]
            returns = np.asarray(data["results"], dtype=float)
        hyperparams = _saved_hyperparams(runs[-1])
    means = returns.mean(axis=1)
    return {
        "spec": spec,
        "command": shell_command(spec),
        "timesteps": timesteps,
        "eval_mean": [float(x) for x in means],
        "eval_std": [float(x) for x in returns.std(axis=1)],
        "eval_returns": [[float(x) for x in row] for row in returns],
        "final_timestep": timesteps[-1],
        "final_score": float(means[-1]),
        "hyperparams": hyperparams,
        "hyperparams_file": hyperparams_source(spec["algo"]),
        "wall_time_s": round(wall_time, 2),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }


def load_results(results: Path) -> tuple[dict[tuple[str, str, str], list[dict[str, Any]]], dict[tuple[str, str, str], Any]]:
    """
    Every result file under ``results``: ``{(suite, env, name): [run, ...]}`` sorted by seed, and the ``skipped.json``
    records ``{(suite, env, name): record}``. Unreadable files are left out.
    """
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    skipped: dict[tuple[str, str, str], Any] = {}
    for suite in SUITES:
        for path in sorted(Path(results, suite).glob("*/*/*.json")):
            key = (suite, path.parent.parent.name, path.parent.name)
            try:
                data = read_json(path)
            except (OSError, ValueError):
                continue
            if path.name == "skipped.json":
                skipped[key] = data
            elif path.name.startswith("seed"):
                runs.setdefault(key, []).append(data)
    for group in runs.values():
        group.sort(key=lambda run: run["spec"]["seed"])
    return runs, skipped
