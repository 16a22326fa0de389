"""
The benchmark runs end to end: ``benchmarks/run.py --smoke`` trains through the zoo's command line and writes one
result file per run, ``benchmarks/report.py`` writes the report and its plots, and a second ``run.py`` redoes nothing.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("rl_zoo3", reason="the zoo extra is not installed: pip install -e '.[test,zoo]'")
pytest.importorskip("rliable", reason="rliable is not installed: pip install -e '.[test,zoo]'")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "benchmarks"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def script(*args: str) -> str:
    """Run ``python ARGS`` from the repository root; return its output."""
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture
def benchmarks_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """``benchmarks/`` on ``sys.path`` for the test, so that its scripts import as modules (and import ``common``)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))


@pytest.fixture
def run_module(benchmarks_on_path: None) -> ModuleType:
    """``benchmarks/run.py`` imported as a module."""
    import run

    return run


@pytest.mark.slow
def test_smoke_run_report_and_resume(tmp_path: Path) -> None:
    output = script("benchmarks/run.py", "--smoke", "--results", str(tmp_path), "--jobs", "2")
    assert "10 runs planned" in output and "10 to run as 8 trainings" in output, output

    files = sorted(tmp_path.glob("*/*/*/seed*.json"))
    found = {(path.parts[-4], path.parts[-3], path.parts[-2], path.stem) for path in files}
    expected = {("main", "CartPole-v1", algo, f"seed{s}") for algo in ("reinforce", "a2c", "ppo") for s in (0, 1)}
    expected |= {("ablation", "CartPole-v1", variant, f"seed{s}") for variant in ("shipped", "baseline_none") for s in (0, 1)}
    assert found == expected
    results = {(path.parts[-4], path.parts[-2], path.stem): json.loads(path.read_text()) for path in files}
    for result in results.values():
        spec = result["spec"]
        assert spec["smoke"] and spec["budget"] == 2048 and spec["eval_freq"] == 512
        # rl_zoo3 evaluates every eval_freq // n_envs calls; 512 is a multiple of every n_envs: 4 points, the last at 2048
        assert result["timesteps"] == [512, 1024, 1536, 2048]
        assert len(result["eval_returns"]) == 4 and all(len(episodes) == 2 for episodes in result["eval_returns"])
        assert result["final_score"] == result["eval_mean"][-1] > 0
        assert result["machine"]["cpu"] and result["machine"]["versions"]["torch"]
        assert result["hyperparams"]["n_envs"] == 8  # what the zoo read from the yml for CartPole-v1
    assert results[("ablation", "baseline_none", "seed0")]["hyperparams"]["baseline"] == "none"
    assert "--hyperparams \"baseline:'none'\"" in results[("ablation", "baseline_none", "seed0")]["command"]
    assert results[("main", "ppo", "seed0")]["hyperparams"]["n_epochs"] == 20  # rl_zoo3's own ppo.yml
    # The ablation's shipped config is the main suite's REINFORCE: trained once, written twice.
    for seed in ("seed0", "seed1"):
        assert results[("ablation", "shipped", seed)]["eval_returns"] == results[("main", "reinforce", seed)]["eval_returns"]

    written = {path: path.stat().st_mtime_ns for path in files}
    again = script("benchmarks/run.py", "--smoke", "--results", str(tmp_path), "--jobs", "2")
    assert "10 already done, 0 copied from an identical run, 0 to run" in again, again
    assert {path: path.stat().st_mtime_ns for path in files} == written

    report = tmp_path / "README.md"
    script("benchmarks/report.py", "--results", str(tmp_path), "--out", str(report), "--reps", "500")
    text = report.read_text()
    headings = ["## Machine", "## REINFORCE vs A2C vs PPO", "### CartPole-v1\n", "### Acrobot-v1", "### LunarLander-v3",
                "### Pendulum-v1", "## Ablation", "### CartPole-v1 (ablation)", "## Incomplete episodes",
                "### Acrobot-v1 (incomplete)", "## Throughput", "## Reproduce"]  # fmt: skip
    for heading in headings:
        assert heading in text, heading
    assert "not run yet" in text  # LunarLander-v3 and Pendulum-v1 are not in the smoke run
    assert "smoke-mode numbers" in text
    assert "IQM [95% CI]" in text
    main_table = text.split("### CartPole-v1\n")[1].split("###")[0]
    for algo in ("reinforce", "a2c", "ppo"):
        row = next(line for line in main_table.splitlines() if line.startswith(f"| {algo} |"))
        assert "| 0, 1 |" in row and "±" in row and "[" in row, row
    assert "python benchmarks/run.py --suite main --envs CartPole-v1 --seeds 2 --smoke --results" in text
    for plot in ("main_CartPole-v1.png", "ablation_CartPole-v1.png"):
        assert (tmp_path / "plots" / plot).read_bytes().startswith(b"\x89PNG")
        assert f"(plots/{plot})" in text
    rows = (tmp_path / "runs.csv").read_text().splitlines()
    assert len(rows) == 1 + len(files) and rows[0].startswith("suite,env,name,algo")


def test_plan(run_module: ModuleType) -> None:
    suites = list(run_module.SUITES)
    specs, skipped = run_module.plan(suites, None, None, 5, False)
    # Only the MuJoCo envs without a shipped REINFORCE entry yet (A2C and PPO still run there).
    assert all(line.split()[1] in run_module.MUJOCO and line.endswith("reinforce: no reinforce entry") for line in skipped)
    for spec in specs:
        budget = run_module.SUITES[spec["suite"]].budgets[spec["env"]]
        assert spec["budget"] == (budget or int(float(spec["zoo_entry"]["n_timesteps"])))
        assert spec["eval_freq"] == spec["budget"] // 25 and spec["eval_episodes"] == 10 and spec["seed"] in range(5)
    planned = {(s["suite"], s["env"], s["name"]) for s in specs}
    assert len(specs) == 5 * len(planned)
    assert len([key for key in planned if key[0] == "main"]) == 3 * len(run_module.SUITES["main"].budgets) - len(skipped)
    assert ("main", "LunarLander-v3", "ppo") in planned and ("main", "HalfCheetah-v4", "reinforce") in planned
    assert ("main", "Ant-v4", "a2c") in planned and ("main", "Ant-v4", "reinforce") in planned
    # rl_zoo3 has no A2C or PPO entry of its own for Reacher-v4: its MuJoCo defaults (normalisation), not its bare default.
    overrides = {(s["env"], s["algo"]): s["overrides"] for s in specs if s["suite"] == "main"}
    assert overrides["Reacher-v4", "a2c"] == overrides["InvertedPendulum-v4", "ppo"] == {"normalize": True}
    assert overrides["Ant-v4", "a2c"] == overrides["Humanoid-v4", "ppo"] == {} == overrides["InvertedPendulum-v4", "reinforce"]
    assert ("eight_envs", "Acrobot-v1", "n128_lr0.001") in planned
    assert ("eight_envs", "CartPole-v1", "n128_lr0.001") not in planned

    # The ablation flips REINFORCE's default (normalize_advantage=False), whatever the shipped entry says.
    assert run_module.reinforce_defaults()["normalize_advantage"] is False
    flipped = next(s for s in specs if s["name"] == "normalize_advantage_flipped")
    assert flipped["overrides"] == {"normalize_advantage": True}
    # The suites on REINFORCE's defaults reset every key of the entry the zoo would otherwise apply (CartPole's n_steps=32).
    assert run_module.zoo_entry("reinforce", "CartPole-v1")["n_steps"] == 32
    defaults = next(s for s in specs if s["suite"] == "defaults" and s["env"] == "CartPole-v1")
    assert defaults["overrides"] == {"n_envs": 1, "n_steps": 512}


def test_plan_skips_an_algorithm_without_an_entry(run_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """An env without a REINFORCE entry: its REINFORCE runs are skipped with the reason, A2C and PPO still run."""
    real_entry = run_module.zoo_entry
    monkeypatch.setattr(run_module, "zoo_entry", lambda algo, env: None if algo == "reinforce" else real_entry(algo, env))
    specs, skipped = run_module.plan(("main",), ["LunarLander-v3"], None, 5, False)
    assert skipped == ["main LunarLander-v3 reinforce: no reinforce entry"]
    assert sorted({spec["algo"] for spec in specs}) == ["a2c", "ppo"] and len(specs) == 10


@pytest.mark.usefixtures("benchmarks_on_path")
def test_report_says_why_an_algorithm_has_no_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row without results says why: no entry in the algorithm's yml, or not run yet."""
    import report

    real_entry = report.zoo_entry
    monkeypatch.setattr(report, "zoo_entry", lambda algo, env: None if algo != "ppo" else real_entry(algo, env))
    page = report.Report(tmp_path, tmp_path / "README.md", reps=10, seed=0).build()
    acrobot = page.split("### Acrobot-v1\n")[1].split("###")[0]
    assert "| reinforce | no reinforce entry for Acrobot-v1 | — |" in acrobot
    assert "| a2c | no a2c entry for Acrobot-v1 | — |" in acrobot
    assert "| ppo | not run yet | — |" in acrobot


@pytest.mark.usefixtures("benchmarks_on_path")
def test_report_counts_solved_seeds_only_where_the_env_has_a_threshold(tmp_path: Path) -> None:
    """Walker2d-v4 has no solve threshold: its row shows "—", not "0/5 solved" (which reads as five failed seeds)."""
    import numpy as np
    import pandas as pd
    import report

    runs = pd.DataFrame(
        {
            "seed": [0, 1],
            "final_score": [1500.0, 900.0],
            "first_step_at_threshold": pd.array([40_000, None], dtype="Int64"),
            "wall_time_s": [10.0, 12.0],
            "eval_freq": pd.array([40_000, 40_000], dtype="Int64"),
            "run": [{}, {}],
        }
    )
    page = report.Report(tmp_path, tmp_path / "README.md", reps=10, seed=0)
    assert page.cells(runs, None, 1000.0)[4:6] == ["1/2", "40,000 (1/2)"]
    assert page.cells(runs, None, np.inf)[4:6] == ["—", "—"]


def test_hyperparams_reach_the_zoo_unchanged(run_module: ModuleType) -> None:
    """The zoo evaluates each ``--hyperparams`` value as Python: strings, None and booleans survive the trip."""
    from common import zoo_command
    from rl_zoo3.utils import StoreDict

    overrides = {"baseline": "none", "max_grad_norm": None, "normalize_advantage": True, "learning_rate": 3e-4}
    parser = argparse.ArgumentParser()
    parser.add_argument("--hyperparams", nargs="+", action=StoreDict)
    spec = {"algo": "reinforce", "env": "CartPole-v1", "seed": 0, "budget": 1, "eval_freq": 1, "eval_episodes": 1}
    command = zoo_command({**spec, "overrides": overrides})
    parsed, _ = parser.parse_known_args(command[command.index("--hyperparams") :])
    assert parsed.hyperparams == overrides


def test_throughput_times_the_checks_that_collection_calls(benchmarks_on_path: None) -> None:
    # The checks are patched where collect_rollouts looks them up: if they move, nothing is timed and the share is 0.
    import throughput

    from sb3_reinforce.reinforce import checks

    original = checks.check_finite
    share = throughput.check_share("CartPole-v1", n_envs=2, n_steps=32, timesteps=256)
    assert 0.0 < share < 1.0
    assert checks.check_finite is original  # restored afterwards


@pytest.mark.parametrize(
    "env_id", ["Acrobot-v1", "LunarLander-v3", "LunarLanderContinuous-v3", "Swimmer-v4", "Ant-v4", "Walker2d-v4"]
)
def test_enqueued_starting_points_are_points_of_the_sampler(env_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A warm start outside the sampler's space would be tried as given but never sampled again (Optuna only warns):
    # every enqueued point names exactly the sampled parameters, each within its distribution.
    import warnings

    import gymnasium as gym
    import optuna

    from sb3_reinforce.zoo.hyperparams_opt import sample_reinforce_params

    monkeypatch.syspath_prepend(str(BENCHMARKS / "searches"))
    import enqueue

    points = enqueue.starting_points(env_id)
    if env_id in ("Ant-v4", "Walker2d-v4"):
        points = [*points, *enqueue.resume_points(env_id)]
    assert points
    space = gym.make(env_id).action_space
    n_actions = space.shape[0] if isinstance(space, gym.spaces.Box) else 0  # what rl_zoo3 passes the sampler
    for point in points:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # FixedTrial warns about a value outside a distribution
            trial = optuna.trial.FixedTrial(point)
            sample_reinforce_params(trial, n_actions=n_actions, n_envs=1, additional_args={})
        assert set(trial.params) == set(point)
    assert enqueue.study_name("Acrobot-v1") == "reinforce-Acrobot-v1-400k"
    assert enqueue.study_name("Swimmer-v4") == "reinforce-Swimmer-v4-1M"


def test_enqueued_defaults_are_reinforces_defaults(run_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # enqueue.DEFAULTS ("the shipped entry", Acrobot's warm start) restates REINFORCE(...)'s defaults as sampled values:
    # if a default changes, this fails instead of the warm start silently meaning something else.
    from sb3_reinforce import REINFORCE
    from sb3_reinforce.zoo.hyperparams_opt import convert_reinforce_params

    monkeypatch.syspath_prepend(str(BENCHMARKS / "searches"))
    import enqueue

    converted = convert_reinforce_params(enqueue.DEFAULTS)
    policy_kwargs = converted.pop("policy_kwargs")
    defaults = run_module.reinforce_defaults()
    assert converted.pop("ent_coef") == 1e-8 and defaults["ent_coef"] == 0.0  # the sampler's lower bound stands for 0
    assert converted == {name: defaults[name] for name in converted}
    policy = REINFORCE("MlpPolicy", "CartPole-v1").policy
    assert policy_kwargs == {"net_arch": policy.net_arch, "activation_fn": policy.activation_fn}


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--algos", "foo"], "no run of suite main matches --envs / --algos"), (["--seeds", "0"], "--seeds must be at least 1")],
)
def test_run_refuses_a_plan_of_no_run(
    run_module: ModuleType, argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_module.main(["--suite", "main", *argv, "--dry-run"])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow  # builds the whole report twice (about 25 s)
@pytest.mark.usefixtures("benchmarks_on_path")
def test_every_published_number_is_what_the_committed_result_files_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """benchmarks/README.md, runs.csv, the README's results table and docs/_generated/ (the tables and figures the
    documentation quotes), regenerated from benchmarks/results/: any difference is a stale page."""
    import shutil

    import report

    assert report.main(["--check"]) == 0, capsys.readouterr().err
    # A hand edit of a generated figure is caught (in a copy of docs/_generated/).
    copy = tmp_path / "_generated"
    shutil.copytree(report.DOCS_GENERATED, copy)
    figures = copy / "figures.json"
    edited = figures.read_text().replace(
        '"main_cartpole_reinforce_median": "500.0"', '"main_cartpole_reinforce_median": "499"'
    )
    figures.write_text(edited)
    monkeypatch.setattr(report, "DOCS_GENERATED", copy)
    assert report.main(["--check"]) == 1
    assert '- "main_cartpole_reinforce_median": "499",' in capsys.readouterr().err
