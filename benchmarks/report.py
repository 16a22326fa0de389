"""
Write ``benchmarks/README.md`` from the result files of ``benchmarks/run.py`` and ``benchmarks/throughput.py``.

Every number in the report is read from the result files (``RESULTS/SUITE/ENV/NAME/seedS.json``,
``RESULTS/throughput.json``): the final scores, the interquartile mean (IQM) with its 95% stratified-bootstrap
confidence interval (computed with rliable), the steps to the solve threshold, the learning curves (PNG files in
``RESULTS/plots/``), the machine and the package versions. What has no result file yet is reported as "not run yet".
It also writes every run's summary to ``RESULTS/runs.csv``.

    python benchmarks/report.py                                  # benchmarks/results -> benchmarks/README.md
    python benchmarks/report.py --results benchmarks/out/smoke --out benchmarks/out/smoke/README.md
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from common import BENCHMARKS_DIR, DEFAULT_RESULTS, REPO_ROOT, load_results, read_json, write_text, zoo_entry
from run import ABLATION_BUDGETS, ABLATION_VARIANTS, ALGOS, BUDGETS, SOLVE_THRESHOLDS, describe_variant

Runs = list[dict[str, Any]]
NOT_RUN = "not run yet"
IQM_CONFIDENCE = 0.95


def first_reach(run: dict[str, Any], threshold: float) -> int | None:
    """The first evaluation step at which the mean evaluation return reached ``threshold``, or None."""
    for step, score in zip(run["timesteps"], run["eval_mean"], strict=True):
        if score >= threshold:
            return int(step)
    return None


def iqm_intervals(scores: dict[str, np.ndarray], reps: int, seed: int) -> dict[str, tuple[float, float, float]]:
    """IQM of the final scores and its 95% percentile stratified-bootstrap interval, with rliable, per name."""
    from rliable import library, metrics

    if not scores:
        return {}
    # rliable's StratifiedBootstrap draws its resamples from numpy's global generator (np.random.choice), not from
    # random_state: seed that too, for the duration of the call, so that the intervals are the same on every run.
    global_state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # arch: random_state is deprecated
            points, intervals = library.get_interval_estimates(
                {name: values.reshape(-1, 1) for name, values in scores.items()},
                lambda x: np.array([metrics.aggregate_iqm(x)]),
                reps=reps,
                confidence_interval_size=IQM_CONFIDENCE,
                random_state=np.random.RandomState(seed),
            )
    finally:
        np.random.set_state(global_state)
    return {name: (float(points[name][0]), float(intervals[name][0, 0]), float(intervals[name][1, 0])) for name in scores}


def number(value: float) -> str:
    return f"{value:,.1f}"


def steps(value: float) -> str:
    return f"{value:,.0f}"


def relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def display_path(path: Path) -> str:
    """A path as typed from the repository root when it is inside it."""
    path = Path(path).resolve()
    return relative(path, REPO_ROOT) if path.is_relative_to(REPO_ROOT) else str(path)


def threshold_of(runs: Runs, env: str) -> float:
    return float(runs[0]["spec"]["solve_threshold"]) if runs else SOLVE_THRESHOLDS[env]


def group_cells(runs: Runs, threshold: float, iqm: tuple[float, float, float] | None) -> list[str]:
    """Seeds, final mean ± std, IQM [CI], solved at the end, steps to threshold, wall time (one table row)."""
    finals = np.array([run["final_score"] for run in runs])
    std = f" ± {number(finals.std(ddof=1))}" if len(finals) > 1 else ""
    reached = [step for step in (first_reach(run, threshold) for run in runs) if step is not None]
    to_threshold = f"{steps(statistics.median(reached))} ({len(reached)}/{len(runs)})" if reached else f"— (0/{len(runs)})"
    interval = f"{number(iqm[0])} [{number(iqm[1])}, {number(iqm[2])}]" if iqm else "—"
    seeds = ", ".join(str(run["spec"]["seed"]) for run in runs)
    wall = statistics.median(run["wall_time_s"] for run in runs)
    solved = sum(final >= threshold for final in finals)
    return [seeds, f"{number(finals.mean())}{std}", interval, f"{solved}/{len(runs)}", to_threshold, f"{wall:,.0f} s"]


def plot_curves(groups: dict[str, Runs], threshold: float, title: str, path: Path) -> None:
    """
    Mean evaluation return over the seeds against steps, shaded ± one standard deviation over the seeds: the whole
    run on the left, the second half on the right on its own scale (an early dip, LunarLander's -6,000 for one, would
    otherwise flatten the comparison at the end).
    """
    figure, (whole, end) = plt.subplots(1, 2, figsize=(10.0, 3.8), dpi=100)
    for name, runs in groups.items():
        grid = np.array(min((run["timesteps"] for run in runs), key=len), dtype=float)
        curves = np.array([np.interp(grid, run["timesteps"], run["eval_mean"]) for run in runs])
        mean, std = curves.mean(axis=0), curves.std(axis=0)
        second_half = grid >= grid[-1] / 2
        for axes, keep in ((whole, slice(None)), (end, second_half)):
            (line,) = axes.plot(grid[keep], mean[keep], label=f"{name} ({len(runs)} seeds)")
            axes.fill_between(grid[keep], (mean - std)[keep], (mean + std)[keep], color=line.get_color(), alpha=0.2,
                              linewidth=0)  # fmt: skip
    for axes, subtitle in ((whole, "whole run"), (end, "second half")):
        axes.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"solved ({threshold:g})")
        axes.set_title(f"{title}: {subtitle}")
        axes.set_xlabel("environment steps")
        axes.grid(alpha=0.3)
    whole.set_ylabel("mean evaluation return")
    end.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def settings_line(runs: Runs) -> str:
    """Budget and evaluation settings, as recorded in the result files."""
    found = sorted({(r["spec"]["budget"], r["spec"]["eval_freq"], r["spec"]["eval_episodes"]) for r in runs})
    parts = [f"{steps(b)} steps, evaluated every {steps(f)} steps on {e} deterministic episodes" for b, f, e in found]
    line = "; ".join(parts)
    if len(found) > 1:
        line += " (**the budgets or evaluation settings differ between runs**)"
    if any(run["spec"].get("smoke") for run in runs):
        line += " — **smoke-mode numbers (tiny budget), not a benchmark**"
    return line


def run_command(suite: str, envs: Sequence[str], runs: Runs, results: Path) -> str:
    seeds = max((run["spec"]["seed"] for run in runs), default=4) + 1
    command = ["python", "benchmarks/run.py", "--suite", suite, "--envs", *envs, "--seeds", str(seeds)]
    if any(run["spec"].get("smoke") for run in runs):
        command.append("--smoke")
    if results.resolve() != DEFAULT_RESULTS.resolve():
        command += ["--results", display_path(results)]
    return shlex.join(command)


class Report:
    def __init__(self, results: Path, out: Path, reps: int, seed: int) -> None:
        self.results, self.out, self.reps, self.seed = results, out, reps, seed
        self.runs, self.skipped = load_results(results)
        self.lines: list[str] = []
        self.commands: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines += lines

    def plot_link(self, path: Path, caption: str) -> str:
        return f"![{caption}]({relative(path, self.out.parent)})"

    def envs(self, suite: str, planned: Sequence[str]) -> list[str]:
        found = [env for s, env, _ in self.runs if s == suite and env not in planned]
        return [*planned, *dict.fromkeys(found)]

    def names(self, suite: str, env: str, planned: Sequence[str]) -> list[str]:
        found = [name for s, e, name in [*self.runs, *self.skipped] if s == suite and e == env and name not in planned]
        return [*planned, *sorted(set(found))]

    def missing_row(self, suite: str, env: str, name: str, n_cells: int) -> list[str]:
        """The cells of an algorithm or variant without results: why it was not started, or "not run yet"."""
        record = self.skipped.get((suite, env, name))
        if record is not None:
            reason = f"not started: {record['reason']}"
        elif (algo := name if suite == "main" else "reinforce") in ALGOS and zoo_entry(algo, env) is None:
            reason = f"no shipped REINFORCE entry for {env} yet" if algo == "reinforce" else f"no rl_zoo3 {algo} entry"
        else:
            reason = NOT_RUN
        return [reason, *["—"] * (n_cells - 1)]

    def section(self, suite: str, env: str, names: Sequence[str], first_column: str, heading: str) -> None:
        groups = {name: self.runs[(suite, env, name)] for name in names if (suite, env, name) in self.runs}
        everything = [run for runs in groups.values() for run in runs]
        threshold = threshold_of(everything, env)
        self.add(f"### {heading}", "")
        if not groups:
            self.add(f"{NOT_RUN.capitalize()}. Solve threshold: {threshold:g}.", "")
        else:
            self.add(f"Budget: {settings_line(everything)}. Solve threshold: {threshold:g}.", "")
        columns = [first_column, "seeds", "final return (mean ± std)", "IQM [95% CI]", "solved at the end",
                   "steps to threshold (median, seeds that reached it)", "wall time per run (median)"]  # fmt: skip
        if suite == "ablation":
            columns.insert(1, "change from the shipped config")
        self.add("| " + " | ".join(columns) + " |", "|---" * len(columns) + "|")
        labels = {name: runs[0]["spec"]["label"] for name, runs in groups.items()}
        iqm = iqm_intervals({name: np.array([r["final_score"] for r in runs]) for name, runs in groups.items()},
                            self.reps, self.seed)  # fmt: skip
        rows = []
        for name in names:
            cells = [name]
            if suite == "ablation":
                cells.append(labels.get(name) or describe_variant(name))
            if name in groups:
                cells += group_cells(groups[name], threshold, iqm.get(name))
            else:
                cells += self.missing_row(suite, env, name, len(columns) - len(cells))
            rows.append("| " + " | ".join(cells) + " |")
        self.add(*rows, "")
        if groups:
            plot = self.results / "plots" / f"{suite}_{env}.png"
            curve_groups = {labels[name] if suite == "main" else name: runs for name, runs in groups.items()}
            plot_curves(curve_groups, threshold, f"{env} ({suite})", plot)
            self.add(self.plot_link(plot, f"{env} learning curves"), "")
            self.add("<details><summary>Hyper-parameters as the zoo used them, and the zoo command of each run</summary>", "")
            for name, runs in groups.items():
                run = runs[0]
                source = Path(run["hyperparams_file"])
                versions = run["machine"]["versions"]
                origin = (
                    f"shipped `{source.name}`"
                    if run["spec"]["algo"] == "reinforce"
                    else f"rl_zoo3 {versions.get('rl_zoo3')} `hyperparams/{source.name}`"
                )
                tuned = run["hyperparams"].get("n_timesteps")
                note = f" (its own budget: {steps(float(tuned))} steps)" if tuned is not None else ""
                params = ", ".join(f"{k}={v!r}" for k, v in run["hyperparams"].items() if k != "n_timesteps")
                zoo = run["command"].replace(f"--seed {run['spec']['seed']} ", "--seed S ", 1)
                self.add(f"- **{name}**: {origin}{note}: `{params}`", f"  `{zoo}` (S: each seed listed above)")
            self.add("", "</details>", "")
        self.commands.append(f"- {heading} ({suite}): `{run_command(suite, [env], everything, self.results)}`")

    def machines(self) -> None:
        self.add("## Machine", "")
        sources: dict[str, Any] = {}
        counts: dict[str, int] = {}
        machines: list[dict[str, Any]] = [run["machine"] for runs in self.runs.values() for run in runs]
        throughput = self.throughput_data()
        if throughput is not None:
            machines.append(throughput["machine"])
        for machine in machines:
            key = repr(sorted(machine.items()))
            sources[key] = machine
            counts[key] = counts.get(key, 0) + 1
        if not sources:
            self.add(f"{NOT_RUN.capitalize()}: no result files.", "")
            return
        columns = ["CPU", "cores (usable)", "platform", "python", "torch", "SB3", "rl_zoo3", "gymnasium", "sb3-reinforce",
                   "result files"]  # fmt: skip
        self.add("| " + " | ".join(columns) + " |", "|---" * len(columns) + "|")
        for key, m in sources.items():
            v = m["versions"]
            cells = [m["cpu"], f"{m['cpu_count']} ({m['usable_cores']})", m["platform"], v.get("python"), v.get("torch"),
                     v.get("stable-baselines3"), v.get("rl_zoo3"), v.get("gymnasium"), v.get("sb3-reinforce"),
                     str(counts[key])]  # fmt: skip
            self.add("| " + " | ".join(str(cell) for cell in cells) + " |")
        self.add("", "Each training run uses one core (one torch thread, one process); runs go in parallel, one per core.", "")

    def throughput_data(self) -> dict[str, Any] | None:
        path = self.results / "throughput.json"
        return read_json(path) if path.is_file() else None

    def throughput(self) -> None:
        self.add("## Throughput", "")
        data = self.throughput_data()
        command = "python benchmarks/throughput.py --json " + display_path(self.results / "throughput.json")
        if data is None:
            self.add(f"{NOT_RUN.capitalize()}: `{command}`", "")
            self.commands.append(f"- Throughput: `{command}`")
            return
        names = data["names"]
        self.add(f"{data['env']}, env-steps per second of training, one process and one torch thread, median of "
                 f"{data['rounds']} interleaved rounds of {steps(data['timesteps'])} steps (ratio to A2C in the same run).",
                 "")  # fmt: skip
        self.add("| n_envs x n_steps | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|")
        for setting in data["settings"]:
            medians = setting["median_steps_per_s"]
            cells = [f"{medians[name]:,.0f} ({medians[name] / medians['A2C']:.2f}x A2C)" for name in names]
            self.add(f"| {setting['n_envs']} x {setting['n_steps']} | " + " | ".join(cells) + " |")
        self.add("")
        self.commands.append(f"- Throughput: `{data['command']}`")

    def write_csv(self) -> Path:
        """One row per run, with pandas."""
        import pandas as pd

        rows = []
        for runs in self.runs.values():
            for run in runs:
                spec = run["spec"]
                keys = ("suite", "env", "name", "algo", "label", "seed", "budget", "eval_freq", "eval_episodes")
                rows.append(
                    {
                        **{key: spec[key] for key in keys},
                        "final_timestep": run["final_timestep"],
                        "final_score": run["final_score"],
                        "solve_threshold": spec["solve_threshold"],
                        "first_step_at_threshold": first_reach(run, spec["solve_threshold"]),
                        "wall_time_s": run["wall_time_s"],
                        "cpu": run["machine"]["cpu"],
                        "copied_from": run.get("copied_from", ""),
                        "smoke": spec.get("smoke", False),
                    }
                )
        path = self.results / "runs.csv"
        table = pd.DataFrame(rows).astype({"first_step_at_threshold": "Int64"})  # integers, blank where never reached
        write_text(path, table.to_csv(index=False, lineterminator="\r\n"))
        return path

    def build(self) -> str:
        results = display_path(self.results)
        command = "python benchmarks/report.py"
        if self.results.resolve() != DEFAULT_RESULTS.resolve() or self.out.resolve() != (BENCHMARKS_DIR / "README.md"):
            command += f" --results {results} --out {display_path(self.out)}"
        self.add(
            "# Benchmarks: REINFORCE, A2C and PPO",
            "",
            f"<!-- Generated by `{command}` from the result files in `{results}/`; do not edit by hand. -->",
            "",
            "REINFORCE runs with the shipped `reinforce.yml`, A2C and PPO with rl_zoo3's own tuned hyper-parameters "
            "(its installed `hyperparams/a2c.yml` and `ppo.yml`), all through `python -m sb3_reinforce.zoo train` with "
            "the same budget per env. Each run is evaluated periodically by the zoo's EvalCallback on deterministic "
            "episodes; its *final return* is the mean return of its last evaluation (at the end of the budget), not the "
            "best one seen.",
            "",
            "- *final return*: mean ± standard deviation (ddof=1) over the seeds of the final returns.",
            f"- *IQM [95% CI]*: interquartile mean of the final returns over the seeds, with its {IQM_CONFIDENCE:.0%} "
            f"percentile stratified-bootstrap confidence interval (rliable `get_interval_estimates` with "
            f"`aggregate_iqm`, {self.reps:,} resamples, seed {self.seed}).",
            "- *solved at the end*: seeds whose final return reaches the solve threshold.",
            "- *steps to threshold*: the first evaluation at which the mean return reached the threshold, median over "
            "the seeds that reached it (how many of them in brackets).",
            "- Learning curves: mean evaluation return over the seeds, shaded ± one standard deviation over the seeds.",
            "- Solve thresholds: " + ", ".join(f"{env} {value:g}" for env, value in SOLVE_THRESHOLDS.items()) + ".",
            "",
        )
        self.machines()
        self.add("## REINFORCE vs A2C vs PPO", "")
        for env in self.envs("main", list(BUDGETS)):
            self.section("main", env, self.names("main", env, ALGOS), "algorithm", env)
        self.add("## Ablation of REINFORCE's design choices", "",
                 "The shipped config, then one change at a time from it (`--hyperparams`).", "")  # fmt: skip
        for env in self.envs("ablation", list(ABLATION_BUDGETS)):
            self.section("ablation", env, self.names("ablation", env, list(ABLATION_VARIANTS)), "variant", f"{env} ablation")
        self.throughput()
        csv_path = self.write_csv()
        self.add("## Reproduce", "",
                 "Each command resumes: runs whose result file exists with the same settings are not redone. "
                 "Add `--scheduler tcp://HOST:8786` to run on a Dask cluster instead of the local cores (same result files). "
                 f"Then `{command}` regenerates this page, its figures and `{display_path(csv_path)}` (one row per run).",
                 "", *self.commands, "")  # fmt: skip
        return "\n".join(self.lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the folder of the result files")
    parser.add_argument("--out", type=Path, default=BENCHMARKS_DIR / "README.md", help="the markdown file to write")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of the IQM confidence intervals")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    args = parser.parse_args(argv)
    report = Report(args.results, args.out, args.reps, args.seed).build()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, report + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
