"""
Scaling out, for real: hyper-parameter searches shared by several workers on a PostgreSQL server the tests start
(two workers, a worker killed mid-trial, a worker in another network namespace), the best trial as a yml entry, and
the benchmark runner on a local Dask cluster (same results as the local pool; a worker killed mid-run).

Outside CI, tests whose server cannot be started here are skipped with the reason; with CI=true they fail instead.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import (
    Namespace,
    Postgres,
    dask_cluster,
    dask_missing,
    need,
    network_namespace,
    postgres_cluster,
    postgres_missing,
    stop_process_group,
)
from tests.zoo_workers import search_command

rl_zoo3 = pytest.importorskip("rl_zoo3", reason="the zoo extra is not installed: pip install -e '.[test,zoo]'")
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from sb3_reinforce import REINFORCE  # noqa: E402
from sb3_reinforce.zoo.hyperparams_opt import ACTIVATIONS, NET_ARCHS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
COUNTED = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED)

pytestmark = pytest.mark.servers


def search_worker(cwd: Path, storage: str, study: str, seed: int, *extra: str, timesteps: int = 1024,
                  prefix: tuple[str, ...] = ()) -> subprocess.Popen:  # fmt: skip
    """One worker of a REINFORCE search on CartPole: ``sb3-reinforce-zoo train -optimize`` with ``extra`` options."""
    args = [*prefix, *search_command(storage, study, seed, timesteps), *extra]
    log = open(cwd / f"worker-{seed}.log", "w")  # the worker holds its own copy
    process = subprocess.Popen(args, cwd=cwd, env=ENV, stdout=log, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # fmt: skip
    log.close()
    STARTED.append(process)
    return process


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """Whatever a test started (and did not see to the end, because it failed) is stopped after it."""
    yield
    while STARTED:
        stop_process_group(STARTED.pop())


def finish(worker: subprocess.Popen, cwd: Path, seed: int, timeout: float = 300) -> None:
    """Wait for a worker and check it succeeded (with its log when it did not)."""
    worker.wait(timeout=timeout)
    assert worker.returncode == 0, (cwd / f"worker-{seed}.log").read_text()[-3000:]


def trials(url: str, study: str, states: tuple[TrialState, ...] | None = None) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=url).get_trials(deepcopy=False, states=states)


# --- PostgreSQL -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    missing = postgres_missing()
    need(missing is None, str(missing))
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def shared_study(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Two workers started together on one new PostgreSQL study, 2 trials each: ``(url, study name)``."""
    cwd = tmp_path_factory.mktemp("shared")
    url = postgres.url()
    workers = [search_worker(cwd, url, "shared", seed, "--n-trials", "2") for seed in (1, 2)]
    try:
        for seed, worker in zip((1, 2), workers, strict=True):
            finish(worker, cwd, seed)
    finally:
        for worker in workers:
            stop_process_group(worker)
    return url, "shared"


def test_two_workers_share_one_postgresql_study(shared_study: tuple[str, str]) -> None:
    url, study = shared_study
    complete = trials(url, study, (TrialState.COMPLETE,))
    assert len(complete) == 4 == len(trials(url, study))  # 2 asked of each worker, nothing else
    by_worker: dict[str, int] = {}
    for trial in complete:
        by_worker[trial.user_attrs["worker"]] = by_worker.get(trial.user_attrs["worker"], 0) + 1
    assert sorted(by_worker.values()) == [2, 2], by_worker  # both contributed
    assert {"baseline", "learning_rate", "n_steps", "one_minus_gamma"} <= set(complete[0].params)


def _running_trial(url: str, study: str, timeout: float = 120) -> optuna.trial.FrozenTrial:
    deadline = time.monotonic() + timeout
    while not (running := trials(url, study, (TrialState.RUNNING,))):
        assert time.monotonic() < deadline, "no trial started"
        time.sleep(0.1)
    return running[0]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_database_outage_shorter_than_the_grace_period_fails_no_trial(tmp_path: Path) -> None:
    """
    PostgreSQL stopped for 2 s (``pg_ctl stop -m fast``) and started again while a worker is in a trial (heartbeat
    every second, grace period 6 s). 8 s after the outage began, when Optuna's heartbeat thread (which dies on the
    first database error) would have let the trial go stale, another worker looks for stale trials, as each does
    before its trials: the trial is still alive, and its worker records its result and ends well.
    """
    missing = postgres_missing()
    need(missing is None, str(missing))
    with postgres_cluster() as server:
        url, study = server.url(), "outage"
        optuna.create_study(study_name=study, storage=url, direction="maximize")
        heartbeat = ("--heartbeat-interval", "1", "--grace-period", "6", "--n-trials", "1")
        worker = search_worker(tmp_path, url, study, 1, *heartbeat, timesteps=400_000)
        trial = _running_trial(url, study)
        time.sleep(1.5)
        outage = time.monotonic()
        server.stop()
        time.sleep(2)
        server.start()
        time.sleep(max(0.0, 8 - (time.monotonic() - outage)))
        assert worker.poll() is None, "the trial ended before the other worker looked"
        other = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=6)
        optuna.storages.fail_stale_trials(optuna.load_study(study_name=study, storage=other))
        assert trials(url, study)[trial.number].state == TrialState.RUNNING
        finish(worker, tmp_path, 1)
        assert [t.state for t in trials(url, study)] == [TrialState.COMPLETE]
        assert "Exception in thread" not in (tmp_path / "worker-1.log").read_text()


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_worker_whose_trial_another_failed_goes_on_to_its_next_trial(postgres: Postgres, tmp_path: Path) -> None:
    """What another worker does to a trial whose heartbeat it found stale (done here by the test): the trial's own
    worker, when it finishes it, logs that its result is not recorded and runs its next trial instead of crashing."""
    url, study = postgres.url(), "failed-by-others"
    optuna.create_study(study_name=study, storage=url, direction="maximize")
    worker = search_worker(tmp_path, url, study, 1, "--heartbeat-interval", "1", "--n-trials", "2", timesteps=20_000)
    trial = _running_trial(url, study)
    optuna.storages.RDBStorage(url).set_trial_state_values(trial._trial_id, TrialState.FAIL)
    finish(worker, tmp_path, 1)
    states = [t.state for t in trials(url, study)]
    assert states == [TrialState.FAIL, TrialState.COMPLETE], states
    assert f"Trial {trial.number} was failed by another worker while it ran" in (tmp_path / "worker-1.log").read_text()


def test_a_server_that_never_answers_is_reported_within_a_minute(tmp_path: Path) -> None:
    """A port that accepts connections and never answers (a hung server): libpq would wait minutes per attempt."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.extend(iter(lambda: listener.accept()[0], None)), daemon=True)
    thread.start()
    url = f"postgresql://postgres@127.0.0.1:{listener.getsockname()[1]}/optuna"
    started = time.monotonic()
    worker = search_worker(tmp_path, url, "hung", 1)
    worker.wait(timeout=120)
    took = time.monotonic() - started
    log = (tmp_path / "worker-1.log").read_text()
    assert worker.returncode != 0 and took < 60, (took, log[-2000:])
    assert "cannot be reached (5 attempts)" in log and "timeout" in log, log[-2000:]
    listener.close()


def test_a_password_in_the_storage_url_is_written_nowhere(tmp_path: Path) -> None:
    """A server with password authentication: the search works, and no file or study attribute holds the password."""
    missing = postgres_missing()
    need(missing is None, str(missing))
    secret = "s3cret-Pa55word"
    with postgres_cluster(password=secret) as server:
        import sqlalchemy.exc

        with pytest.raises(sqlalchemy.exc.OperationalError, match="password"):  # the server asks for it
            optuna.create_study(study_name="secret", storage=server.url(with_password=False))
        worker = search_worker(tmp_path, server.url(), "secret", 1, "--n-trials", "2")
        finish(worker, tmp_path, 1)
        study = optuna.load_study(study_name="secret", storage=server.url())
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
        command = study.user_attrs["command"]
        assert secret not in command and f"--storage {server.url(with_password=False)}" in command
        written = [path for path in tmp_path.rglob("*") if path.is_file()]
        assert any(path.name.startswith("report_") and path.suffix == ".pkl" for path in written)
        assert [path for path in written if secret.encode() in path.read_bytes()] == []


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_killed_worker_s_trial_is_failed_and_rerun(postgres: Postgres, tmp_path: Path) -> None:
    """
    Two workers share a study of 6 trials (``--max-total-trials``), heartbeat every second, grace period 3 s. One is
    SIGKILLed in the middle of a trial near the end of the study (5 or 6 trials done or running): its trial must
    become FAIL (not stay RUNNING), the survivor must run the same parameters again, and the study must end with 6
    complete trials. (rl_zoo3's own callback would count the dead trial as done and stop the survivor one short.)
    """
    url, study, total, grace = postgres.url(), "killed", 6, 3
    optuna.create_study(study_name=study, storage=url, direction="maximize")
    heartbeat = ("--heartbeat-interval", "1", "--grace-period", str(grace), "--max-total-trials", str(total))
    survivor = search_worker(tmp_path, url, study, 1, *heartbeat, timesteps=3000)
    # The victim's trials are 20 times longer: the survivor brings the study near its end while the victim is still in
    # a trial, so that trial is there to kill (with equal trials the victim could take none of the last ones and end).
    victim = search_worker(tmp_path, url, study, 2, *heartbeat, timesteps=60000)

    def victim_s_trial() -> optuna.trial.FrozenTrial | None:
        running = trials(url, study, (TrialState.RUNNING,))
        return next((t for t in running if t.user_attrs.get("worker", "").endswith(f":{victim.pid}")), None)

    deadline = time.monotonic() + 240
    killed = None
    while killed is None:
        assert time.monotonic() < deadline, (tmp_path / "worker-2.log").read_text()[-3000:]
        assert victim.poll() is None, "the worker to kill ended before the end of the study"
        trial = victim_s_trial()
        if trial is not None and len(trials(url, study, COUNTED)) >= total - 1:
            victim.send_signal(signal.SIGSTOP)  # frozen: its trial cannot end between this look and the kill
            frozen = victim_s_trial()
            if frozen is not None:
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=30)
                killed, killed_at = frozen, time.monotonic()
            else:
                victim.send_signal(signal.SIGCONT)
        time.sleep(0.1)

    # The survivor fails the dead trial once it has been silent for the grace period (when it starts its next trial,
    # or while it waits for the other workers' trials at the end): within the grace period plus one of its trials.
    state = TrialState.RUNNING
    while state == TrialState.RUNNING:
        state = optuna.load_study(study_name=study, storage=url).trials[killed.number].state
        assert time.monotonic() - killed_at < grace + 60, "the dead worker's trial is still RUNNING"
        time.sleep(0.2)
    assert state == TrialState.FAIL
    print(f"the killed worker's trial {killed.number} was FAIL {time.monotonic() - killed_at:.1f} s after the kill")

    finish(survivor, tmp_path, 1)
    all_trials = trials(url, study)
    assert [t for t in all_trials if t.state == TrialState.RUNNING] == []
    complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
    assert len(complete) == total, [(t.number, t.state) for t in all_trials]
    retried_from = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
    retries = [t for t in complete if retried_from(t) == killed.number]
    assert len(retries) == 1
    assert retries[0].params == killed.params
    assert retries[0].user_attrs["worker"].endswith(f":{survivor.pid}")


def test_a_worker_in_another_network_namespace(tmp_path: Path) -> None:
    """A second "host": a worker in its own network namespace reaches PostgreSQL over a veth pair, not loopback."""
    missing = postgres_missing()
    need(missing is None, str(missing))
    try:
        namespace_context = network_namespace()
        namespace: Namespace = namespace_context.__enter__()
    except OSError as error:
        pytest.skip(f"no network namespace: {error}")  # allowed in CI too: namespaces need root and CAP_NET_ADMIN
    try:
        with postgres_cluster(hosts=("127.0.0.1", namespace.host_ip), trusted_subnets=(namespace.subnet,)) as cluster:
            # Inside the namespace, the server is not on loopback: only the veth address reaches it.
            probe = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)"
            for host, reachable in (("127.0.0.1", False), (namespace.host_ip, True)):
                result = subprocess.run(namespace.command([sys.executable, "-c", probe, host, str(cluster.port)]),
                                        capture_output=True, timeout=30)  # fmt: skip
                assert (result.returncode == 0) == reachable, (host, result.stderr)

            local = search_worker(tmp_path, cluster.url(), "hosts", 1, "--n-trials", "2")
            remote = search_worker(tmp_path, cluster.url(namespace.host_ip), "hosts", 2, "--n-trials", "2",
                                   prefix=tuple(namespace.command([])))  # fmt: skip
            finish(local, tmp_path, 1)
            finish(remote, tmp_path, 2)
            complete = trials(cluster.url(), "hosts", (TrialState.COMPLETE,))
            assert len(complete) == 4
            workers = {trial.user_attrs["worker"].rsplit(":", 1)[1] for trial in complete}
            assert len(workers) == 2  # both processes, one of them over the veth pair
    finally:
        namespace_context.__exit__(None, None, None)


def test_best_trial_becomes_a_yml_entry_that_trains(shared_study: tuple[str, str], tmp_path: Path) -> None:
    url, study_name = shared_study
    conf = tmp_path / "reinforce.yml"
    original = (REPO / "zoo_configs" / "reinforce.yml").read_text()
    conf.write_text(original)
    command = ["best", "--storage", url, "--study-name", study_name, "-conf", str(conf), "-o", str(conf)]
    result = subprocess.run([sys.executable, "-m", "sb3_reinforce.zoo", *command], env=ENV, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CartPole-v1:" in result.stdout  # the env came from the command recorded in the study

    study = optuna.load_study(study_name=study_name, storage=url)
    written = yaml.safe_load(conf.read_text())
    entry = written["CartPole-v1"]
    assert (entry["n_envs"], entry["n_timesteps"], entry["policy"]) == (8, 100_000, "MlpPolicy")  # kept from the base entry
    assert entry["learning_rate"] == study.best_trial.params["learning_rate"]
    assert entry["gamma"] == 1 - study.best_trial.params["one_minus_gamma"]
    assert written["Acrobot-v1"] == yaml.safe_load(original)["Acrobot-v1"]  # the other entries are untouched
    assert conf.read_text().startswith(original.split("CartPole-v1:")[0])  # and so are the comments
    assert f"trial {study.best_trial.number} of study 'shared'" in conf.read_text()

    # The entry trains: the zoo reads it and the model has the best trial's settings.
    train = [sys.executable, "-m", "sb3_reinforce.zoo", "train", "--algo", "reinforce", "--env", "CartPole-v1", "-conf",
             str(conf), "-n", "512", "-f", "logs", "--eval-freq", "-1", "--num-threads", "1"]  # fmt: skip
    subprocess.run(train, cwd=tmp_path, env=ENV, check=True, capture_output=True, timeout=300)
    model = REINFORCE.load(tmp_path / "logs" / "reinforce" / "CartPole-v1_1" / "CartPole-v1.zip")
    params = study.best_trial.params
    assert (model.n_steps, model.baseline) == (params["n_steps"], params["baseline"])
    assert model.lr_schedule(1.0) == params["learning_rate"]
    assert model.policy.net_arch == NET_ARCHS[params["net_arch"]]
    assert model.policy.activation_fn is ACTIVATIONS[params["activation_fn"]]


# --- Dask -----------------------------------------------------------------------------------------------------------

RUN = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--smoke", "--suite", "main"]


def results_of(folder: Path) -> dict[str, dict[str, Any]]:
    """The result files under ``folder``, by path relative to it."""
    paths = sorted(folder.glob("main/*/*/seed*.json"))
    return {path.relative_to(folder).as_posix(): json.loads(path.read_text()) for path in paths}


def scores(result: dict[str, Any]) -> tuple[Any, ...]:
    """What must not depend on where a run ran: the evaluations and the hyper-parameters."""
    return result["timesteps"], result["eval_returns"], result["hyperparams"], result["spec"]


@pytest.fixture(scope="module")
def local_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The smoke benchmark's main suite (3 algorithms, 2 seeds) on the local process pool."""
    need(dask_missing() is None, str(dask_missing()))
    folder = tmp_path_factory.mktemp("local")
    subprocess.run([*RUN, "--results", str(folder), "--jobs", "2"], env=ENV, check=True, capture_output=True, timeout=600)
    return results_of(folder)


def test_dask_cluster_gives_the_local_results(local_results: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    with dask_cluster(2, tmp_path) as cluster:
        output = subprocess.run([*RUN, "--results", str(tmp_path / "dask"), "--scheduler", cluster.address], env=ENV,
                                capture_output=True, text=True, timeout=600)  # fmt: skip
    assert output.returncode == 0, output.stdout[-3000:] + output.stderr[-3000:]
    assert "6 trainings done (6 runs of the plan), 0 failed" in output.stdout
    on_dask = results_of(tmp_path / "dask")
    assert len(on_dask) == 6 and on_dask.keys() == local_results.keys()
    for path, result in on_dask.items():
        assert scores(result) == scores(local_results[path]), path  # same seeds, same scores, wherever it ran
    assert len({result["worker"] for result in on_dask.values()}) == 2  # both workers took runs

    again = subprocess.run([*RUN, "--results", str(tmp_path / "dask"), "--scheduler", "tcp://127.0.0.1:9"], env=ENV,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    # resume: nothing to do, no cluster needed
    assert "6 already done, 0 copied from an identical run, 0 to run" in again.stdout


def trainings_in_process_group(pgid: int) -> list[int]:
    """Pids of the zoo trainings running in process group ``pgid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[2]) == pgid and b"sb3_reinforce.zoo" in cmdline:
            found.append(int(stat.parent.name))
    return found


def test_dask_worker_killed_mid_run(local_results: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """
    Kill one of two workers (with the training it runs) once it has finished a run and started another: every run
    still ends exactly once, what the dead worker had finished is kept, and the scores are the local ones.
    """
    results = tmp_path / "dask"
    with dask_cluster(2, tmp_path) as cluster:
        runner = subprocess.Popen([*RUN, "--results", str(results), "--scheduler", cluster.address], env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        victim = cluster.workers[1].pid
        deadline = time.monotonic() + 300
        while True:
            assert runner.poll() is None and time.monotonic() < deadline, "the runner ended before the kill"
            finished_there = [r for r in results_of(results).values() if r["worker"].endswith(f":{victim}")]
            if finished_there and trainings_in_process_group(victim):
                break
            time.sleep(0.2)
        cluster.kill_worker(1)  # the worker process only: its training must die with it (PR_SET_PDEATHSIG)
        deadline = time.monotonic() + 20
        while trainings_in_process_group(victim):
            assert time.monotonic() < deadline, "the killed worker's training outlived it"
            time.sleep(0.2)
        output, _ = runner.communicate(timeout=600)
    assert runner.returncode == 0, output[-3000:]
    assert "6 trainings done (6 runs of the plan), 0 failed" in output, output[-3000:]
    done_lines = [line for line in output.splitlines() if line.startswith("done ")]
    assert len(done_lines) == 6 == len(set(done_lines))  # each run reported (and written) once
    on_dask = results_of(results)
    assert on_dask.keys() == local_results.keys()
    assert {r["worker"] for r in on_dask.values() if r["worker"].endswith(f":{victim}")}  # its finished runs are kept
    for path, result in on_dask.items():
        assert scores(result) == scores(local_results[path]), path
