"""
Write ``benchmarks/README.md`` from the result files of ``run.py`` and ``throughput.py``: per suite and env, the final
returns, their interquartile mean (IQM) with a 95% stratified-bootstrap interval (rliable), the steps to the solve
threshold and the learning curves (``RESULTS/plots/``); the machines; every run as a row of ``RESULTS/runs.csv``.
Every number is read from the result files; what has none is reported as "not run yet".

    python benchmarks/report.py                                  # benchmarks/results -> benchmarks/README.md
    python benchmarks/report.py --results benchmarks/out/smoke --out benchmarks/out/smoke/README.md
"""

from __future__ import annotations

import argparse
import os
import shlex
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from common import BENCHMARKS_DIR, DEFAULT_RESULTS, REPO_ROOT, read_json, zoo_entry
from run import SOLVE_THRESHOLDS, SUITES

COLUMNS = "name|change|seeds|final return (mean ± std)|IQM [95% CI]|solved at the end|steps to threshold (median, seeds "
COLUMNS = (COLUMNS + "that reached it)|wall time per run (median)").split("|")
CSV_COLUMNS = "suite env name algo seed budget eval_freq eval_episodes final_score solve_threshold first_step_at_threshold"
CSV_COLUMNS += " wall_time_s cpu smoke copied_from converted_from"


def load_runs(results: Path) -> pd.DataFrame:
    """One row per result file under ``results`` (``SUITE/ENV/NAME/seedS.json``), the whole file in column ``run``."""
    rows = []
    for path in sorted(Path(results).glob("*/*/*/seed*.json")):
        run = read_json(path)
        spec = run["spec"]
        threshold = spec.get("solve_threshold", SOLVE_THRESHOLDS.get(spec["env"]))
        threshold = np.inf if threshold is None else threshold  # no threshold: never "solved"
        curve = zip(run["timesteps"], run["eval_mean"], strict=True) if spec["eval_freq"] is not None else []  # converted
        reached = [step for step, score in curve if score >= threshold]
        row = {**spec, **run, "solve_threshold": threshold, "first_step_at_threshold": reached[0] if reached else None}
        rows.append({**row, "cpu": (run.get("machine") or {}).get("cpu"), "run": run})
    frame = pd.DataFrame(rows, columns=[*CSV_COLUMNS.split(), "run"])
    return frame.astype({"first_step_at_threshold": "Int64", "eval_freq": "Int64"})


def iqm_intervals(scores: dict[str, np.ndarray], reps: int, seed: int) -> dict[str, tuple[float, float, float]]:
    """IQM of the final returns and its 95% percentile stratified-bootstrap interval, with rliable, per name."""
    from rliable import library, metrics

    if not scores:
        return {}
    # rliable resamples with numpy's global generator, not only random_state: seed both, so every run agrees.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # arch: random_state is deprecated
            points, intervals = library.get_interval_estimates(
                {name: values.reshape(-1, 1) for name, values in scores.items()},
                lambda x: np.array([metrics.aggregate_iqm(x)]),
                reps=reps,
                random_state=np.random.RandomState(seed),
            )
    finally:
        np.random.set_state(state)
    return {name: (points[name][0], intervals[name][0, 0], intervals[name][1, 0]) for name in scores}


def markdown(table: pd.DataFrame) -> list[str]:
    lines = ["| " + " | ".join(table.columns) + " |", "|---" * len(table.columns) + "|"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in table.itertuples(index=False)]


def plot_curves(groups: dict[str, pd.DataFrame], threshold: float, title: str, path: Path) -> None:
    """Mean evaluation return over the seeds ± one std: the whole run, and the second half on its own scale."""
    figure, (whole, end) = plt.subplots(1, 2, figsize=(10.0, 3.8), dpi=100)
    for name, runs in groups.items():
        grid = np.array(min((run["timesteps"] for run in runs["run"]), key=len), dtype=float)
        curves = np.array([np.interp(grid, run["timesteps"], run["eval_mean"]) for run in runs["run"]])
        mean, std, keep = curves.mean(axis=0), curves.std(axis=0), grid >= grid[-1] / 2
        for axes, part in ((whole, slice(None)), (end, keep)):
            (line,) = axes.plot(grid[part], mean[part], label=f"{name} ({len(runs)} seeds)")
            axes.fill_between(grid[part], (mean - std)[part], (mean + std)[part], color=line.get_color(), alpha=0.2, lw=0)
    for axes, subtitle in ((whole, "whole run"), (end, "second half")):
        if np.isfinite(threshold):
            axes.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"solved ({threshold:g})")
        axes.set(title=f"{title}: {subtitle}", xlabel="environment steps")
        axes.grid(alpha=0.3)
    whole.set_ylabel("mean evaluation return")
    end.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def throughput_table(settings: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per ``n_envs x n_steps`` setting of ``throughput.py``: each rate with its ratio to A2C's, the checks' share."""
    rows = [
        {"n_envs x n_steps": f"{s['n_envs']} x {s['n_steps']}"}
        | {name: f"{r:,.0f} ({r / s['median_steps_per_s']['A2C']:.2f}x A2C)" for name, r in s["median_steps_per_s"].items()}
        | {"non-finite checks of collection (share of REINFORCE's training time)": f"{s['check_time_share']:.2%}"}
        for s in settings
    ]
    return pd.DataFrame(rows)


def display(path: Path) -> str:
    path = Path(path).resolve()
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)


INTRO = """Every run goes through `python -m sb3_reinforce.zoo train` (`benchmarks/run.py`) and is scored one way, the same
for REINFORCE, A2C and PPO: the zoo's EvalCallback evaluates the policy 25 times per run on 10 deterministic episodes,
and a run's *final return* is the mean return of its last evaluation, at the end of the budget (not the best one seen).
Rows converted from the scripts that `run.py` replaced say how they were scored (no learning curve).

- *final return*: mean ± standard deviation (ddof=1) over the seeds.
- *IQM [95% CI]*: interquartile mean over the seeds with its 95% percentile stratified-bootstrap interval (rliable
  `get_interval_estimates`, `aggregate_iqm`, REPS resamples, seed SEED).
- *steps to threshold*: the first evaluation whose mean return reached the solve threshold, median over the seeds
  that reached it.
- Learning curves: mean evaluation return over the seeds, shaded ± one standard deviation.
"""


class Report:
    def __init__(self, results: Path, out: Path, reps: int, seed: int) -> None:
        self.results, self.out, self.reps, self.seed = results, out, reps, seed
        self.runs = load_runs(results)
        self.lines: list[str] = []
        self.commands: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines += lines

    def cells(self, runs: pd.DataFrame, iqm: tuple[float, float, float] | None, threshold: float) -> list[str]:
        """Seeds, final return, IQM [CI], solved at the end, steps to the threshold, wall time: one row's cells."""
        finals, reached, wall = runs["final_score"], runs["first_step_at_threshold"].dropna(), runs["wall_time_s"].dropna()
        to_threshold = f"{reached.median():,.0f} ({len(reached)}/{len(runs)})" if len(reached) else f"— (0/{len(runs)})"
        has_threshold = bool(np.isfinite(threshold))  # an env without one (Walker2d-v4) shows "—", not "0/5"
        order = " (order not recorded)" if "seed_order" in runs["run"].iloc[0] else ""
        return [
            ", ".join(map(str, runs["seed"])) + order,
            f"{finals.mean():,.1f}" + (f" ± {finals.std():,.1f}" * (len(runs) > 1)),
            f"{iqm[0]:,.1f} [{iqm[1]:,.1f}, {iqm[2]:,.1f}]" if iqm else "—",
            f"{(finals >= threshold).sum()}/{len(runs)}" if has_threshold else "—",
            to_threshold if has_threshold and runs["eval_freq"].notna().all() else "—",
            f"{wall.median():,.0f} s" if len(wall) else "—",
        ]

    def section(self, suite: str, env: str) -> None:
        found = self.runs[(self.runs["suite"] == suite) & (self.runs["env"] == env)]
        runs = {name: run for name, run in SUITES[suite].runs.items() if env in run.get("envs", [env])}
        names, threshold = [*runs, *sorted(set(found["name"]) - set(runs))], SOLVE_THRESHOLDS.get(env) or np.inf
        self.add(f"### {env}" + ("" if suite == "main" else f" ({suite})"), "")
        for setting in found.drop_duplicates(["budget", "eval_freq", "eval_episodes"]).itertuples():
            scored = (
                f"scored as {setting.run['scoring']}; converted from {setting.run['converted_from']}, no learning curve"
                if pd.isna(setting.eval_freq)
                else f"evaluated every {setting.eval_freq:,} steps on {setting.eval_episodes} deterministic episodes"
            )
            self.add(f"- {setting.budget:,} steps, {scored}")
        if found["smoke"].any():
            self.add("- **smoke-mode numbers (tiny budget), not a benchmark**")
        self.add(
            f"- solve threshold: {threshold:g}" if np.isfinite(threshold) else "- no solve threshold (gymnasium defines none)",
            "",
        )
        by_name = dict(list(found.groupby("name", sort=False)))
        groups = {name: by_name[name].sort_values("seed") for name in names if name in by_name}  # the bootstrap's order
        iqm = iqm_intervals({name: group["final_score"].to_numpy() for name, group in groups.items()}, self.reps, self.seed)
        rows = []
        for name in names:
            algo = runs.get(name, {}).get("algo", "reinforce")
            change = ", ".join(f"{k}={v!r}" for k, v in runs.get(name, {}).items() if k not in ("algo", "envs")) or "—"
            if name in groups:
                rows.append([name, change, *self.cells(groups[name], iqm.get(name), threshold)])
            else:  # why: the yml is read only here
                reason = "not run yet" if zoo_entry(algo, env) is not None else f"no {algo} entry for {env}"
                rows.append([name, change, reason, *["—"] * 5])
        self.add(*markdown(pd.DataFrame(rows, columns=COLUMNS).drop(columns=["change"] if suite == "main" else [])), "")
        curves = {name: group for name, group in groups.items() if len(group["run"].iloc[0]["timesteps"]) > 1}
        if curves:
            plot = self.results / "plots" / f"{suite}_{env}.png"
            plot_curves(curves, threshold, f"{env} ({suite})", plot)
            self.add(f"![{env} learning curves]({Path(os.path.relpath(plot, self.out.parent)).as_posix()})", "")
        details = []
        for name, group in groups.items():
            run = group["run"].iloc[0]
            params = ", ".join(f"{k}={v!r}" for k, v in run["hyperparams"].items() if k != "n_timesteps")
            details.append(f"- **{name}** (`{run.get('hyperparams_file', 'reinforce.yml')}`): `{params}`")
            if "command" in run:
                details.append(f"  `{run['command'].replace(f'--seed {group.seed.iloc[0]} ', '--seed S ', 1)}`")
        if details:
            summary = "<details><summary>Hyper-parameters as the zoo used them, and the zoo command (S: the seed)</summary>"
            self.add(summary, "", *details, "", "</details>", "")
        seeds = str(found["seed"].max() + 1 if len(found) else 5)
        argv = ["python", "benchmarks/run.py", "--suite", suite, "--envs", env, "--seeds", seeds]
        if found["smoke"].any():
            argv.append("--smoke")
        if self.results.resolve() != DEFAULT_RESULTS:
            argv += ["--results", display(self.results)]
        self.commands.append(f"- {env} ({suite}): `{shlex.join(argv)}`")

    def machines(self) -> None:
        machines = [run["machine"] for run in self.runs["run"] if run.get("machine")]
        if (self.results / "throughput.json").is_file():
            machines.append(read_json(self.results / "throughput.json")["machine"])
        cores = [{"CPU": m["cpu"], "cores (usable)": f"{m['cpu_count']} ({m['usable_cores']})"} for m in machines]
        rows = [{**row, "platform": m["platform"], **m["versions"]} for row, m in zip(cores, machines, strict=True)]
        table = pd.DataFrame(rows).value_counts(sort=False).reset_index(name="result files") if machines else None
        self.add("## Machine", "", *(markdown(table) if table is not None else ["Not run yet."]), "")

    def throughput(self) -> None:
        self.add("## Throughput", "")
        path = self.results / "throughput.json"
        if not path.is_file():
            self.add(f"Not run yet: `python benchmarks/throughput.py --json {display(path)}`", "")
            return
        data = read_json(path)
        about = f"{data['env']}, env-steps per second of training, one process and one torch thread, median of "
        about += f"{data['rounds']} interleaved rounds of {data['timesteps']:,} steps (ratio to A2C in the same run)."
        self.add(about, "", *markdown(throughput_table(data["settings"])), "")
        self.commands.append(f"- Throughput: `{data['command']}`")

    def build(self) -> str:
        command = "python benchmarks/report.py"
        if self.results.resolve() != DEFAULT_RESULTS or self.out.resolve() != BENCHMARKS_DIR / "README.md":
            command += f" --results {display(self.results)} --out {display(self.out)}"
        generated = (
            f"<!-- Generated by `{command}` from the result files in `{display(self.results)}/`; do not edit by hand. -->"
        )
        self.add(
            "# Benchmarks: REINFORCE, A2C and PPO",
            "",
            generated,
            "",
            INTRO.replace("REPS", f"{self.reps:,}").replace("SEED", str(self.seed)),
        )
        self.machines()
        for suite in SUITES:
            self.add(f"## {SUITES[suite].title}", "", SUITES[suite].about, "")
            for env in [
                *SUITES[suite].budgets,
                *sorted(set(self.runs[self.runs["suite"] == suite]["env"]) - set(SUITES[suite].budgets)),
            ]:
                self.section(suite, env)
        self.throughput()
        self.runs.drop(columns=["run"]).to_csv(self.results / "runs.csv", index=False, lineterminator="\r\n")
        self.add(
            "## Reproduce",
            "",
            "Each command resumes (runs whose result file exists with the same settings are not redone); add "
            f"`--scheduler tcp://HOST:8786` to run on a Dask cluster. Then `{command}` regenerates this page, its figures "
            f"and `{display(self.results / 'runs.csv')}` (one row per run).",
            "",
            *self.commands,
            "",
        )
        return "\n".join(self.lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the folder of the result files")
    parser.add_argument("--out", type=Path, default=BENCHMARKS_DIR / "README.md", help="the markdown file to write")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of the IQM confidence intervals")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    args = parser.parse_args(argv)
    text = Report(args.results, args.out, args.reps, args.seed).build()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
