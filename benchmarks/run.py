"""
Benchmark REINFORCE against A2C and PPO through the RL Zoo, and ablate REINFORCE's design choices.

Suites:

- ``main``: REINFORCE with the shipped ``reinforce.yml``, A2C and PPO with rl_zoo3's own tuned ``a2c.yml`` /
  ``ppo.yml`` (read from the installed rl_zoo3, not copied), on the envs of ``BUDGETS`` with the same budget for the
  three algorithms. An algorithm with no entry for an env in its yml is not started (recorded as skipped).
- ``ablation``: REINFORCE on the envs of ``ABLATION_BUDGETS``, the shipped config and then one change at a time
  (``ABLATION_VARIANTS``). Where the budget is the main suite's (CartPole-v1), the shipped config *is* the main
  suite's REINFORCE run: it is trained once and its result written to both places.

Every run is ``python -m sb3_reinforce.zoo train --algo ALGO --env ENV --seed S -n BUDGET --eval-freq F
--eval-episodes 10 --n-eval-envs 1 --num-threads 1 --device cpu -f TMP --verbose 0 [--hyperparams k:v ...]`` in a
subprocess: the zoo evaluates the policy every ``F = BUDGET / N_EVALUATIONS`` (25) steps on 10 deterministic episodes, and the
result (every evaluation; the final score is the last one) goes to one JSON file per run,
``RESULTS/SUITE/ENV/ALGO_OR_VARIANT/seedS.json``, written atomically. A run whose file exists with the same spec
(budget, overrides, evaluation settings, yml entry) is not redone, so an interrupted benchmark resumes where it stopped and the
full benchmark can be run in pieces. Runs go to a pool of ``--jobs`` processes (default: the usable cores), one core
each, or with ``--scheduler tcp://HOST:8786`` to the workers of a Dask cluster, one run per worker thread. Both go
through the same loop (:func:`execute`, which takes any ``concurrent.futures.Executor``): the runner submits each run
as a task, and writes its result file itself when the task returns, so the workers need no shared disk, resume works
the same, and a run whose worker dies is rescheduled by Dask on another worker and written once. Dask workers need
``pip install 'sb3-reinforce[benchmark,distributed]'`` (the same versions as the runner's: a worker whose yml entry
differs refuses the run); ``common.py`` is sent to them by the runner.

Commands (seeds are 0..N-1)::

    python benchmarks/run.py --smoke   # CI: CartPole-v1, 2 seeds, 2048 steps, to benchmarks/out/smoke (~40 s, 2 cores)
    python benchmarks/run.py --suite main --envs CartPole-v1 --seeds 5
    python benchmarks/run.py --suite main --envs Acrobot-v1 --seeds 5
    python benchmarks/run.py --suite main --envs LunarLander-v3 Pendulum-v1 --seeds 5
    python benchmarks/run.py --suite ablation --envs CartPole-v1 Acrobot-v1 --seeds 5
    python benchmarks/run.py --suite all --seeds 5 --jobs 2  # everything not done yet
    python benchmarks/run.py --suite all --dry-run           # list the runs and their zoo commands, run nothing
    python benchmarks/run.py --suite all --seeds 5 --scheduler tcp://HOST:8786  # on a Dask cluster
    python benchmarks/report.py                              # then write benchmarks/README.md from the results
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from common import (
    BENCHMARKS_DIR,
    DEFAULT_RESULTS,
    hyperparams_source,
    identity,
    is_done,
    json_safe,
    read_json,
    run_one,
    run_path,
    shell_command,
    skipped_path,
    write_json,
    zoo_entry,
)
from tqdm import tqdm

ALGOS = ("reinforce", "a2c", "ppo")
# Training budget per env, the same for the three algorithms (main suite).
BUDGETS = {"CartPole-v1": 100_000, "Acrobot-v1": 500_000, "LunarLander-v3": 1_000_000, "Pendulum-v1": 1_000_000}
# Mean evaluation return at which an env counts as solved.
SOLVE_THRESHOLDS = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "LunarLander-v3": 200.0, "Pendulum-v1": -200.0}
ABLATION_BUDGETS = {"CartPole-v1": 100_000, "Acrobot-v1": 100_000}
N_EVALUATIONS = 25  # evaluations per run: eval_freq = budget // N_EVALUATIONS (a multiple of 16 for every budget)
EVAL_EPISODES = 10
SEEDS = 5

FLIP = "flip"  # in ABLATION_VARIANTS: the opposite of the shipped config's (boolean) value
# name -> hyper-parameters changed from the shipped config (passed as --hyperparams)
ABLATION_VARIANTS: dict[str, dict[str, Any]] = {
    "shipped": {},
    "baseline_none": {"baseline": "none"},
    "baseline_mean": {"baseline": "mean"},
    "incomplete_drop": {"incomplete_episodes": "drop"},
    "incomplete_bootstrap": {"incomplete_episodes": "bootstrap"},
    "normalize_advantage_flipped": {"normalize_advantage": FLIP},
    "no_grad_clipping": {"max_grad_norm": None},
}

# --smoke: a few seconds of training per run, to check that everything works end to end.
SMOKE_ENVS = ("CartPole-v1",)
SMOKE_BUDGET = 2048
SMOKE_EVAL_FREQ = 512  # a multiple of every n_envs used (1, 4, 8, 16): the zoo evaluates every eval_freq // n_envs calls
SMOKE_EVAL_EPISODES = 2
SMOKE_SEEDS = 2
SMOKE_VARIANTS = ("shipped", "baseline_none")
SMOKE_RESULTS = BENCHMARKS_DIR / "out" / "smoke"


def reinforce_defaults() -> dict[str, Any]:
    """The default hyper-parameters of ``REINFORCE.__init__`` (what the shipped yml entries leave out)."""
    import inspect

    from sb3_reinforce import REINFORCE

    parameters = inspect.signature(REINFORCE.__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def label(overrides: dict[str, Any]) -> str:
    """How a variant is shown: its ``--hyperparams`` changes, or "shipped config"."""
    return ", ".join(f"{key}={value!r}" for key, value in overrides.items()) or "shipped config"


def describe_variant(name: str) -> str:
    """A variant of ``ABLATION_VARIANTS`` in words, before its flipped values are resolved."""
    changes = ABLATION_VARIANTS.get(name, {})
    return ", ".join(f"{key} flipped" if value == FLIP else f"{key}={value!r}" for key, value in changes.items()) or label({})


def make_spec(suite: str, env: str, algo: str, name: str, seed: int, budget: int, eval_freq: int, eval_episodes: int,
              overrides: dict[str, Any], entry: dict[str, Any], smoke: bool) -> dict[str, Any]:  # fmt: skip
    """One run; ``entry`` is the yml entry the zoo will read (recorded, so that a run is redone when its yml changes)."""
    return {
        "suite": suite,
        "env": env,
        "algo": algo,
        "name": name,
        "label": label(overrides) if suite == "ablation" else algo,
        "seed": seed,
        "budget": budget,
        "overrides": overrides,
        "zoo_entry": json_safe(entry),
        "eval_freq": eval_freq,
        "eval_episodes": eval_episodes,
        "n_eval_envs": 1,
        "device": "cpu",
        "solve_threshold": SOLVE_THRESHOLDS[env],
        "smoke": smoke,
    }


def plan(
    suites: Sequence[str],
    envs: Sequence[str] | None,
    algos: Sequence[str],
    variants: Sequence[str] | None,
    seeds: int,
    smoke: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """
    The runs to do: ``(specs, skipped, warnings)``. ``skipped`` lists, with the reason, the algorithms and variants
    not started (no entry in their yml, or a variant that changes nothing).
    """
    specs: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    warnings: list[str] = []

    def settings(env: str, budgets: dict[str, int]) -> tuple[int, int, int]:
        if smoke:
            return SMOKE_BUDGET, SMOKE_EVAL_FREQ, SMOKE_EVAL_EPISODES
        return budgets[env], budgets[env] // N_EVALUATIONS, EVAL_EPISODES

    def check_eval_freq(suite: str, env: str, name: str, entry: dict[str, Any], eval_freq: int) -> None:
        n_envs = int(entry.get("n_envs", 1))
        if eval_freq % n_envs:
            warnings.append(
                f"{suite} {env} {name}: eval_freq {eval_freq} is not a multiple of n_envs {n_envs}; the zoo evaluates "
                f"every {eval_freq // n_envs * n_envs} steps"
            )

    def skip(suite: str, env: str, name: str, algo: str, reason: str) -> None:
        skipped.append({"suite": suite, "env": env, "name": name, "algo": algo, "reason": reason,
                        "hyperparams_file": hyperparams_source(algo)})  # fmt: skip

    if "main" in suites:
        for env in envs if envs is not None else (SMOKE_ENVS if smoke else BUDGETS):
            if env not in BUDGETS:
                continue
            budget, eval_freq, eval_episodes = settings(env, BUDGETS)
            for algo in algos:
                entry = zoo_entry(algo, env)
                if entry is None:
                    owner = "shipped REINFORCE" if algo == "reinforce" else f"rl_zoo3 {algo}"
                    skip("main", env, algo, algo, f"no {owner} entry for {env} yet (in {hyperparams_source(algo)})")
                    continue
                check_eval_freq("main", env, algo, entry, eval_freq)
                specs += [make_spec("main", env, algo, algo, seed, budget, eval_freq, eval_episodes, {}, entry, smoke)
                          for seed in range(seeds)]  # fmt: skip

    if "ablation" in suites:
        defaults: dict[str, Any] | None = None
        for env in envs if envs is not None else (SMOKE_ENVS if smoke else ABLATION_BUDGETS):
            if env not in ABLATION_BUDGETS:
                continue
            budget, eval_freq, eval_episodes = settings(env, ABLATION_BUDGETS)
            entry = zoo_entry("reinforce", env)
            for name in variants if variants is not None else (SMOKE_VARIANTS if smoke else ABLATION_VARIANTS):
                if entry is None:
                    skip("ablation", env, name, "reinforce", f"no shipped REINFORCE entry for {env} yet")
                    continue
                if defaults is None:
                    defaults = reinforce_defaults()
                shipped = {**defaults, **entry}
                overrides = {
                    key: (not shipped.get(key, False)) if value == FLIP else value
                    for key, value in ABLATION_VARIANTS[name].items()
                }
                effective = {**shipped, **overrides}
                if overrides and all(shipped.get(key) == value for key, value in overrides.items()):
                    skip("ablation", env, name, "reinforce", f"{label(overrides)} is already the shipped config")
                    continue
                if effective.get("incomplete_episodes") == "bootstrap" and effective.get("baseline") != "value":
                    skip("ablation", env, name, "reinforce", "incomplete_episodes='bootstrap' needs baseline='value'")
                    continue
                check_eval_freq("ablation", env, name, effective, eval_freq)
                specs += [make_spec("ablation", env, "reinforce", name, seed, budget, eval_freq, eval_episodes,
                                    overrides, entry, smoke) for seed in range(seeds)]  # fmt: skip
    return specs, skipped, warnings


def record_skipped(results: Path, skipped: Iterable[dict[str, Any]], specs: Iterable[dict[str, Any]]) -> None:
    """Write ``skipped.json`` for what was not started, and remove it where runs are now planned."""
    for record in skipped:
        path = skipped_path(results, record["suite"], record["env"], record["name"])
        if not path.is_file() or read_json(path) != record:
            write_json(path, record)
    for key in {(spec["suite"], spec["env"], spec["name"]) for spec in specs}:
        skipped_path(results, *key).unlink(missing_ok=True)


def training_key(spec: dict[str, Any]) -> str:
    """What determines the training itself: two specs with the same key (e.g. the ablation's shipped config and the
    main suite's REINFORCE at the same budget) are one training run, done once and written to both files."""
    key = identity(spec)
    del key["suite"], key["name"]
    return json.dumps(key, sort_keys=True)


def twins(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The same training in the other suite: the main suite's REINFORCE is the ablation's shipped config."""
    if spec["algo"] != "reinforce" or spec["overrides"]:
        return []
    places = (("main", "reinforce"), ("ablation", "shipped"))
    return [{**spec, "suite": suite, "name": name} for suite, name in places if (suite, name) != (spec["suite"], spec["name"])]


def finished_twins(todo: Sequence[dict[str, Any]], results: Path) -> list[tuple[dict[str, Any], Path]]:
    """The runs of ``todo`` that an identical finished run of the other suite answers, with its result file."""
    found = []
    for spec in todo:
        done = [twin for twin in twins(spec) if is_done(results, twin)]
        if done:
            found.append((spec, run_path(results, done[0])))
    return found


def execute(specs: Sequence[dict[str, Any]], executor: concurrent.futures.Executor, results: Path,
            progress: bool | None = None) -> list[str]:  # fmt: skip
    """
    Submit every run to ``executor`` and write each result file as soon as its run finishes.

    :param specs: The runs (see :func:`common.run_one`); specs with the same :func:`training_key` are trained once.
    :param executor: Any ``concurrent.futures.Executor``: a ``ProcessPoolExecutor``, a ``ThreadPoolExecutor``, or a
        Dask cluster's ``distributed.Client(address).get_executor()``.
    :param results: The results folder.
    :param progress: Show a tqdm progress bar (None: only on a terminal).
    :return: The failures, one message each; the other runs are saved.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        groups.setdefault(training_key(spec), []).append(spec)
    futures = {executor.submit(run_one, group[0]): group for group in groups.values()}
    failures: list[str] = []
    with tqdm(total=len(futures), unit="run", disable=None if progress is None else not progress, file=sys.stdout) as bar:
        try:
            for future in concurrent.futures.as_completed(futures):
                group = futures[future]
                spec = group[0]
                what = f"{spec['suite']} {spec['env']} {spec['label']} seed {spec['seed']}"
                try:
                    result = future.result()
                except Exception as error:
                    failures.append(f"{what}: {error}")
                    bar.write(f"FAILED {what}: {error}")
                else:
                    for twin in group:
                        write_json(run_path(results, twin), {**result, "spec": twin})
                    bar.set_postfix_str(f"{what}: {result['final_score']:.1f}")
                    if bar.disable:  # no bar (not a terminal): one line per run instead
                        print(f"done {what}: final {result['final_score']:.1f} ({result['wall_time_s']:.0f} s)", flush=True)
                finally:
                    bar.update()
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()
            raise
    return failures


@contextlib.contextmanager
def make_executor(scheduler: str | None, kind: str, jobs: int) -> Iterator[concurrent.futures.Executor]:
    """
    Where the runs go: a local pool of ``jobs`` processes (or threads), or, with ``scheduler``, the Dask cluster
    behind that address (``distributed.Client(scheduler).get_executor()``, after sending it ``common.py``).
    Unfinished runs are cancelled when the block is left early (an interrupt); a run already going on a Dask worker
    cannot be stopped from here and ends there (its result is not written).
    """
    if scheduler is None:
        pool_class = concurrent.futures.ProcessPoolExecutor if kind == "process" else concurrent.futures.ThreadPoolExecutor
        pool = pool_class(max_workers=jobs)
        try:
            yield pool
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        return
    try:
        from distributed import Client
    except ImportError:
        raise SystemExit("--scheduler needs dask.distributed: pip install 'sb3-reinforce[benchmark,distributed]'") from None
    with Client(scheduler, timeout=60) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        print(f"Dask cluster {scheduler}: {len(workers)} workers, {sum(w['nthreads'] for w in workers.values())} threads")
        from distributed.diagnostics.plugin import SchedulerUploadFile, UploadFile

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


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=("main", "ablation", "all"), default="all")
    parser.add_argument("--envs", nargs="+", choices=sorted({*BUDGETS, *ABLATION_BUDGETS}), help="default: the suite's")
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS), help="main suite")
    parser.add_argument("--variants", nargs="+", choices=list(ABLATION_VARIANTS), help="ablation suite (default: all)")
    parser.add_argument("--seeds", type=int, help=f"seeds 0..N-1 (default {SEEDS}, {SMOKE_SEEDS} with --smoke)")
    parser.add_argument("--jobs", type=int, default=usable_cores(), help="runs at a time (default: usable cores)")
    parser.add_argument("--executor", choices=("process", "thread"), default="process", help="local pool")
    parser.add_argument("--scheduler", help="a Dask scheduler's address (tcp://HOST:8786): run there, not locally")
    parser.add_argument("--smoke", action="store_true", help="tiny budget on CartPole-v1, for CI")
    parser.add_argument("--results", type=Path, help=f"default {DEFAULT_RESULTS} ({SMOKE_RESULTS} with --smoke)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs to do and their commands, run nothing")
    args = parser.parse_args(argv)

    results: Path = args.results or (SMOKE_RESULTS if args.smoke else DEFAULT_RESULTS)
    suites = ("main", "ablation") if args.suite == "all" else (args.suite,)
    seeds = args.seeds if args.seeds is not None else (SMOKE_SEEDS if args.smoke else SEEDS)
    specs, skipped, warnings = plan(suites, args.envs, args.algos, args.variants, seeds, args.smoke)
    todo = [spec for spec in specs if not is_done(results, spec)]
    for spec in todo:
        path = run_path(results, spec)
        if args.smoke and path.is_file() and not read_json(path).get("spec", {}).get("smoke", True):
            parser.error(f"--smoke would overwrite the full-budget result {path}; give another --results folder")
    todo.sort(key=lambda spec: (-spec["budget"], spec["suite"], spec["env"], spec["name"], spec["seed"]))

    for message in warnings:
        print(f"warning: {message}")
    for record in skipped:
        print(f"not started: {record['suite']} {record['env']} {record['name']}: {record['reason']}")
    copies = finished_twins(todo, results)
    todo = [spec for spec in todo if all(spec is not copied for copied, _ in copies)]
    trainings = len({training_key(spec) for spec in todo})
    summary = [f"{len(specs) - len(todo) - len(copies)} already done"]
    if copies:
        summary.append(f"{len(copies)} to copy from the identical run of the other suite")
    summary.append(f"{len(todo)} to run")
    if trainings < len(todo):
        summary[-1] += f" as {trainings} trainings (the main suite's REINFORCE is the ablation's shipped config)"
    print(f"{len(specs)} runs planned in {results}: " + ", ".join(summary))
    if args.dry_run:
        for spec in todo:
            print("  " + shell_command(spec))
        return 0
    record_skipped(results, skipped, specs)
    for spec, twin in copies:
        write_json(
            run_path(results, spec), {**read_json(twin), "spec": spec, "copied_from": twin.relative_to(results).as_posix()}
        )
    if not todo:
        return 0

    try:
        with make_executor(args.scheduler, args.executor, max(1, min(args.jobs, trainings))) as executor:
            failures = execute(todo, executor, results)
    except KeyboardInterrupt:
        print("interrupted: finished runs are saved; run the same command again to resume")
        return 130
    print(f"{trainings - len(failures)} trainings done ({len(todo)} runs of the plan), {len(failures)} failed")
    for failure in failures:
        print(f"FAILED {failure.splitlines()[0]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
