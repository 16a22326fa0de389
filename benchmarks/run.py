"""
Every training run of the benchmark, through the RL Zoo, scored one way (``common.py``: the mean return of the zoo's
last evaluation, 10 deterministic episodes, evaluated 25 times per run). One JSON file per run,
``RESULTS/SUITE/ENV/NAME/seedS.json``, written atomically; a run whose file exists with the same settings is not
redone, so every command resumes, and two planned runs that train the same thing (the main suite's REINFORCE and the
ablation's shipped config) are trained once.

Suites (``SUITES``):

- ``main``: REINFORCE with the shipped ``reinforce.yml``, A2C and PPO with rl_zoo3's own ``a2c.yml`` / ``ppo.yml``
  (read from the installed rl_zoo3, not copied), the same budget for the three.
- ``entries``: every shipped REINFORCE entry at its own ``n_timesteps``.
- ``ablation``: the shipped entry, then one change at a time (``--hyperparams``).
- ``incomplete``, ``defaults``, ``eight_envs``: REINFORCE's defaults with a few changes (how incomplete episodes
  are handled with each baseline; the defaults themselves; 8 envs).

Runs go to a pool of ``--jobs`` processes (one core each) or, with ``--scheduler tcp://HOST:8786``, to a Dask
cluster; the runner writes each result file itself, so workers need no shared disk.

    python benchmarks/run.py --smoke                   # CI: CartPole-v1, 2 seeds, 2048 steps (benchmarks/out/smoke)
    python benchmarks/run.py --suite main --envs CartPole-v1 --seeds 5
    python benchmarks/run.py --suite main --envs LunarLander-v3 --algos reinforce --seeds 10
    python benchmarks/run.py --suite entries --envs MountainCar-v0 --seeds 5
    python benchmarks/run.py --suite incomplete --envs Acrobot-v1 --seeds 3
    python benchmarks/run.py --suite all --dry-run     # list the runs not done yet and their zoo commands
    python benchmarks/run.py --suite all --scheduler tcp://HOST:8786
    python benchmarks/report.py                        # then write benchmarks/README.md from the results
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import inspect
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import BENCHMARKS_DIR, DEFAULT_RESULTS, read_json, run_one, run_path, shell_command, write_json, zoo_entry
from tqdm import tqdm

ALGOS = ("reinforce", "a2c", "ppo")
SOLVE_THRESHOLDS = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "LunarLander-v3": 200.0, "Pendulum-v1": -200.0}
SOLVE_THRESHOLDS |= {"MountainCar-v0": -110.0, "MountainCarContinuous-v0": 90.0, "LunarLanderContinuous-v3": 200.0}
MUJOCO = ("HalfCheetah-v4", "Hopper-v4", "Walker2d-v4", "Swimmer-v4", "Ant-v4", "Humanoid-v4", "Reacher-v4")
MUJOCO += ("InvertedPendulum-v4", "InvertedDoublePendulum-v4")  # Tianshou's nine
SOLVE_THRESHOLDS |= {"HalfCheetah-v4": 4800.0, "Hopper-v4": 3800.0, "Walker2d-v4": None, "Swimmer-v4": 360.0}  # gymnasium's
SOLVE_THRESHOLDS |= {"Ant-v4": 6000.0, "Humanoid-v4": None}  # gymnasium's (none for Humanoid)
SOLVE_THRESHOLDS |= {"InvertedPendulum-v4": 950.0, "InvertedDoublePendulum-v4": 9100.0, "Reacher-v4": -3.75}  # gymnasium's
MUJOCO_DEFAULTS = {"normalize": True}  # rl_zoo3's A2C and PPO MuJoCo entries: its default entry with normalisation
N_EVALUATIONS, EVAL_EPISODES, SEEDS = 25, 10, 5
FLIP = "flip"  # an override meaning: the opposite of the shipped (boolean) value
SMALL = {"CartPole-v1": 100_000, "Acrobot-v1": 100_000}


@dataclass
class Suite:
    """
    Envs with their budgets (None: the entry's own ``n_timesteps``) and named runs, each the ``--hyperparams`` it
    changes; in a run, ``algo`` picks the algorithm (default REINFORCE) and ``envs`` limits it to some envs.
    ``from_defaults``: the changes apply to REINFORCE's defaults (the entry's other keys are reset), not to the entry.
    """

    title: str
    about: str
    budgets: dict[str, int | None]
    runs: dict[str, dict[str, Any]]
    from_defaults: bool = False


EIGHT_ENVS = [("value", False, 32, 3e-3), ("value", False, 128, 3e-3), ("value", False, 32, 1e-3), ("mean", True, 32, 3e-3)]
EIGHT_ENVS += [("mean", True, 64, 3e-3), ("mean", True, 128, 3e-3), ("mean", True, 64, 1e-3)]
SUITES = {
    "main": Suite(
        "REINFORCE vs A2C vs PPO",
        "REINFORCE with the shipped `reinforce.yml`, A2C and PPO with rl_zoo3's own tuned `hyperparams/a2c.yml` and "
        "`ppo.yml` (read from the installed rl_zoo3, not copied), the same budget for the three. On a MuJoCo task where "
        "rl_zoo3 has no entry of its own for A2C or PPO (A2C on Reacher, InvertedPendulum and InvertedDoublePendulum; "
        "PPO on those three, whose tuned entries are for their `-v2` versions), its MuJoCo defaults: the `default` "
        "entry with `normalize: True` (`--hyperparams normalize:True`), as its `Ant-v4` and `HalfCheetah-v4` entries are.",
        {"CartPole-v1": 100_000, "Acrobot-v1": 500_000, "LunarLander-v3": 1_000_000, "Pendulum-v1": 1_000_000}
        | dict.fromkeys(MUJOCO, 1_000_000),
        {algo: {"algo": algo} for algo in ALGOS},
    ),
    "entries": Suite(
        "The shipped entries at their own budgets",
        "Each REINFORCE entry of `reinforce.yml` at its own `n_timesteps`.",
        dict.fromkeys(
            [
                *("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0", "LunarLanderContinuous-v3"),
                *("Ant-v4", "InvertedPendulum-v4", "InvertedDoublePendulum-v4", "Reacher-v4", "Humanoid-v4"),
            ]
        ),
        {"reinforce": {}},
    ),
    "ablation": Suite(
        "Ablation of REINFORCE's design choices",
        "The shipped entry, then one change at a time from it.",
        SMALL,
        {"shipped": {}, "baseline_none": {"baseline": "none"}, "baseline_mean": {"baseline": "mean"}}
        | {"incomplete_drop": {"incomplete_episodes": "drop"}, "incomplete_bootstrap": {"incomplete_episodes": "bootstrap"}}
        | {"normalize_advantage_flipped": {"normalize_advantage": FLIP}, "no_grad_clipping": {"max_grad_norm": None}},
    ),
    "incomplete": Suite(
        "Incomplete episodes",
        "REINFORCE's defaults with `normalize_advantage=True`, one env; each run sets `incomplete_episodes` and `baseline`.",
        SMALL,
        {
            f"{mode}_{baseline}": {"n_envs": 1, "incomplete_episodes": mode, "baseline": baseline, "normalize_advantage": True}
            for mode, baseline in [(m, b) for m in ("carry", "drop") for b in ("value", "mean", "none")]
            + [("bootstrap", "value")]
        },
        from_defaults=True,
    ),
    "defaults": Suite(
        "REINFORCE's defaults",
        '`REINFORCE("MlpPolicy", env)`: every argument at its default, one env.',
        SMALL,
        {"defaults": {"n_envs": 1}},
        from_defaults=True,
    ),
    "eight_envs": Suite(
        "Eight envs",
        "REINFORCE's defaults with 8 envs and the changes listed.",
        {"CartPole-v1": 100_000, "Acrobot-v1": 500_000},
        {
            f"{b}_adv{int(a)}_n{n}_lr{lr:g}": {"envs": ["CartPole-v1"], "n_envs": 8, "n_steps": n, "learning_rate": lr}
            | {"baseline": b, "normalize_advantage": a}
            for b, a, n, lr in EIGHT_ENVS
        }
        | {f"n{n}_lr0.001": {"envs": ["Acrobot-v1"], "n_envs": 8, "n_steps": n, "learning_rate": 1e-3} for n in (64, 128)},
        from_defaults=True,
    ),
}
# --smoke: a few seconds of training per run, to check that everything works end to end.
SMOKE = {"envs": ["CartPole-v1"], "budget": 2048, "eval_freq": 512, "eval_episodes": 2, "seeds": 2}
SMOKE |= {"runs": {"main": ALGOS, "ablation": ("shipped", "baseline_none")}, "results": BENCHMARKS_DIR / "out" / "smoke"}
IDENTITY = ("suite", "env", "algo", "name", "seed", "budget", "overrides", "zoo_entry", "eval_freq", "eval_episodes")


def reinforce_defaults() -> dict[str, Any]:
    """The default hyper-parameters of ``REINFORCE.__init__`` (what the yml entries leave out)."""
    from sb3_reinforce import REINFORCE

    parameters = inspect.signature(REINFORCE.__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def resolve(suite: Suite, entry: dict[str, Any], changes: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The ``--hyperparams`` of a run (see :class:`Suite`), and why it is not started (None when it is)."""
    defaults = reinforce_defaults()
    shipped = {**defaults, **entry}
    if suite.from_defaults:
        if set(entry) - set(defaults) - {"policy", "n_timesteps", "n_envs"}:
            raise ValueError(f"cannot reset every key of {entry} to REINFORCE's defaults")
        return {**{key: defaults[key] for key in entry if key in defaults}, **changes}, None
    resolved = {key: (not shipped.get(key, False)) if value == FLIP else value for key, value in changes.items()}
    if resolved and all(shipped.get(key) == value for key, value in resolved.items()):
        return resolved, f"{resolved} is already the shipped config"
    if {**shipped, **resolved}.get("incomplete_episodes") == "bootstrap" and {**shipped, **resolved}["baseline"] != "value":
        return resolved, "incomplete_episodes='bootstrap' needs baseline='value'"
    return resolved, None


def plan(suites: Sequence[str], envs: Sequence[str] | None, names: Sequence[str] | None, seeds: int, smoke: bool):
    """The runs of ``suites`` (only ``envs`` and the runs or algorithms ``names``, when given), and why some are not."""
    specs, skipped = [], []
    for suite_name in suites:
        suite, chosen = SUITES[suite_name], SMOKE["runs"].get(suite_name, ()) if smoke else names
        for env, budget in suite.budgets.items():
            for name, run in suite.runs.items():
                if env not in run.get("envs", [env]) or env not in (SMOKE["envs"] if smoke else envs or [env]):
                    continue
                if chosen is not None and name not in chosen:
                    continue
                changes = {key: value for key, value in run.items() if key not in ("algo", "envs")}
                algo = run.get("algo", "reinforce")
                if algo != "reinforce" and env in MUJOCO and zoo_entry(algo, env, fallback=False) is None:
                    changes = {**MUJOCO_DEFAULTS, **changes}
                entry = zoo_entry(algo, env)  # read only for the runs planned: it parses the algorithm's whole yml
                resolved, reason = resolve(suite, entry, changes) if entry is not None else ({}, f"no {algo} entry")
                if reason is not None:
                    skipped.append(f"{suite_name} {env} {name}: {reason}")
                    continue
                total = SMOKE["budget"] if smoke else int(budget or float(entry["n_timesteps"]))
                spec = {"suite": suite_name, "env": env, "algo": algo, "name": name, "budget": total, "overrides": resolved}
                spec |= {"zoo_entry": entry, "eval_freq": SMOKE["eval_freq"] if smoke else total // N_EVALUATIONS}
                spec |= {"eval_episodes": SMOKE["eval_episodes"] if smoke else EVAL_EPISODES, "smoke": smoke}
                specs += [{**spec, "seed": seed, "solve_threshold": SOLVE_THRESHOLDS[env]} for seed in range(seeds)]
    return specs, skipped


def identity(spec: dict[str, Any], training_only: bool = False) -> str:
    """What defines a run (a file with another identity is stale); ``training_only``: without where it is filed."""
    keys = [key for key in IDENTITY if not (training_only and key in ("suite", "name"))]
    return json.dumps({key: spec.get(key) for key in keys}, sort_keys=True)


def finished(results: Path) -> dict[str, Path]:
    """Every result file under ``results``, by the training it holds (:func:`identity` without suite and name)."""
    done = {}
    for path in sorted(Path(results).glob("*/*/*/seed*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            done.setdefault(identity(read_json(path)["spec"], training_only=True), path)
    return done


def execute(groups: list[list[dict[str, Any]]], executor: concurrent.futures.Executor, results: Path) -> list[str]:
    """Train the first spec of each group on ``executor``, write its result to every spec of the group; the failures."""
    futures = {executor.submit(run_one, group[0]): group for group in groups}
    failures: list[str] = []
    with tqdm(total=len(futures), unit="run", file=sys.stdout, disable=None) as bar:  # a bar only on a terminal
        for future in concurrent.futures.as_completed(futures):
            group = futures[future]
            what = f"{group[0]['suite']} {group[0]['env']} {group[0]['name']} seed {group[0]['seed']}"
            try:
                result = future.result()
            except Exception as error:
                failures.append(f"{what}: {error}")
                bar.write(f"FAILED {what}: {error}")
            else:
                for spec in group:
                    write_json(run_path(results, spec), {**result, "spec": spec})
                bar.write(f"done {what}: final {result['final_score']:.1f} ({result['wall_time_s']:.0f} s)")
            bar.update()
    return failures


@contextlib.contextmanager
def make_executor(scheduler: str | None, jobs: int) -> Iterator[concurrent.futures.Executor]:
    """A local pool of ``jobs`` processes, or the Dask cluster at ``scheduler`` (sent ``common.py`` first)."""
    if scheduler is None:
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
            try:
                yield pool
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        return
    try:
        from distributed import Client
        from distributed.diagnostics.plugin import SchedulerUploadFile, UploadFile
    except ImportError:
        raise SystemExit("--scheduler needs dask.distributed: pip install 'sb3-reinforce[benchmark,distributed]'") from None
    with Client(scheduler, timeout=60) as client:
        # The scheduler (which unpickles the tasks) and every worker, also one that joins later, import common.py from
        # here: what client.upload_file does, under one fixed name, so that runners do not pile up registrations.
        common = str(Path(__file__).with_name("common.py"))
        client.register_plugin(SchedulerUploadFile(common), name="sb3-reinforce-benchmarks-common")
        client.register_plugin(UploadFile(common), name="sb3-reinforce-benchmarks-common")
        executor = client.get_executor()
        try:
            yield executor
        finally:
            executor.shutdown(wait=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=[*SUITES, "all"], default="all")
    parser.add_argument("--envs", nargs="+", choices=sorted({env for suite in SUITES.values() for env in suite.budgets}))
    parser.add_argument("--algos", "--variants", dest="names", nargs="+", help="only these algorithms or run names")
    parser.add_argument("--seeds", type=int, help=f"seeds 0..N-1 (default {SEEDS}, {SMOKE['seeds']} with --smoke)")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)), help="runs at a time (default: cores)")
    parser.add_argument("--scheduler", help="a Dask scheduler's address (tcp://HOST:8786): run there, not locally")
    parser.add_argument("--smoke", action="store_true", help="tiny budget on CartPole-v1, for CI")
    parser.add_argument("--results", type=Path, help=f"default {DEFAULT_RESULTS} ({SMOKE['results']} with --smoke)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs to do and their commands, run nothing")
    args = parser.parse_args(argv)

    results: Path = args.results or (SMOKE["results"] if args.smoke else DEFAULT_RESULTS)
    seeds = args.seeds if args.seeds is not None else (SMOKE["seeds"] if args.smoke else SEEDS)
    suites = list(SUITES) if args.suite == "all" else [args.suite]
    if seeds < 1:
        parser.error(f"--seeds must be at least 1, got {seeds}")
    specs, skipped = plan(suites, args.envs, args.names, seeds, args.smoke)
    for line in skipped:
        print(f"not started: {line}")
    if not specs:
        names = sorted({name for suite in suites for name in SUITES[suite].runs})
        parser.error(f"no run of suite {args.suite} matches --envs / --algos (run names or algorithms: {', '.join(names)})")
    done = finished(results)
    todo: dict[str, list[dict[str, Any]]] = {}
    already = copies = 0
    for spec in specs:
        path = run_path(results, spec)
        if path.is_file() and identity(read_json(path)["spec"]) == identity(spec):
            already += 1
            continue
        if args.smoke and path.is_file() and not read_json(path)["spec"].get("smoke", True):
            parser.error(f"--smoke would overwrite the full-budget result {path}; give another --results folder")
        twin = done.get(identity(spec, training_only=True))
        if twin is not None and not args.dry_run:  # trained already, filed elsewhere
            write_json(path, {**read_json(twin), "spec": spec, "copied_from": twin.relative_to(results).as_posix()})
            copies += 1
        elif twin is None:
            todo.setdefault(identity(spec, training_only=True), []).append(spec)
    groups = sorted(todo.values(), key=lambda group: -group[0]["budget"])
    runs = sum(map(len, groups))
    print(
        f"{len(specs)} runs planned in {results}: {already} already done, {copies} copied from an identical run, "
        f"{runs} to run as {len(groups)} trainings"
    )
    if args.dry_run:
        print("\n".join("  " + shell_command(group[0]) for group in groups))
        return 0
    if not groups:
        return 0
    try:
        with make_executor(args.scheduler, max(1, min(args.jobs, len(groups)))) as executor:
            failures = execute(groups, executor, results)
    except KeyboardInterrupt:
        print("interrupted: finished runs are saved; run the same command again to resume")
        return 130
    print(f"{len(groups) - len(failures)} trainings done ({runs} runs of the plan), {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
