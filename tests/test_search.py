"""
The search additions that need no server: the heartbeat patches and the waiting callback on SQLite, the heartbeat
options of ``train``, and ``best``'s yml writing. (``test_scale_out.py`` runs them against real servers.)
"""

import importlib.util
import shlex
import warnings
from pathlib import Path

import pytest
import yaml

rl_zoo3 = pytest.importorskip("rl_zoo3", reason="the zoo extra is not installed: pip install -e '.[test,zoo]'")
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from sb3_reinforce.zoo import best, cli, default_config_path  # noqa: E402
from sb3_reinforce.zoo.hyperparams_opt import sample_reinforce_params  # noqa: E402
from sb3_reinforce.zoo.storage import Heartbeat, MaxTrialsSurvivingDeadWorkers, rdb_patches, rdb_storage  # noqa: E402

COUNTED = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_the_wait_at_the_end_reruns_a_dead_worker_s_trial(tmp_path: Path) -> None:
    """
    ``MaxTrialsSurvivingDeadWorkers`` on an SQLite storage with a heartbeat: a trial left RUNNING by a "dead" worker
    (one heartbeat, then silence) is failed and rerun, so the study reaches its total of complete trials. rl_zoo3's
    own ``MaxTrialsCallback`` counts the dead trial as done and stops one short.
    """

    def study_with_a_dead_trial(name: str) -> tuple[optuna.Study, optuna.Trial]:
        storage = rdb_storage(f"sqlite:///{tmp_path / 'study.db'}", Heartbeat(interval=1, grace_period=5))
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        storage.record_heartbeat(dead._trial_id)
        return study, dead

    def objective(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", 0, 1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study, dead = study_with_a_dead_trial("plain")
        study.optimize(objective, callbacks=[optuna.study.MaxTrialsCallback(3, states=COUNTED)])
        assert [t.state for t in study.trials] == [TrialState.RUNNING, TrialState.COMPLETE, TrialState.COMPLETE]

        study, dead = study_with_a_dead_trial("surviving")
        study.optimize(objective, callbacks=[MaxTrialsSurvivingDeadWorkers(3, states=COUNTED, poll_interval=0.2)])
    states = [t.state for t in study.trials]
    assert states[0] == TrialState.FAIL and states.count(TrialState.COMPLETE) == 3, states
    assert study.trials[-1].params == {"x": dead.params["x"]}  # the dead trial's parameters, run again


def test_the_patches_give_rl_zoo3_the_heartbeat_and_the_waiting_callback(tmp_path: Path) -> None:
    """What rl_zoo3's search gets inside ``rdb_patches``: a heartbeat storage for an RDB URL and the waiting callback;
    for a JournalFile, its own storage and ``MaxTrialsCallback`` (no heartbeat there: waiting would be pointless)."""
    from rl_zoo3 import exp_manager

    with rdb_patches(Heartbeat(interval=1, grace_period=3)):
        study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
        assert study._storage.get_heartbeat_interval() == 1
        assert type(exp_manager.MaxTrialsCallback(6, states=COUNTED)) is MaxTrialsSurvivingDeadWorkers
    with rdb_patches(Heartbeat(interval=1, grace_period=3)):
        journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "s.log")))
        optuna.create_study(study_name="j", storage=journal)
        assert type(exp_manager.MaxTrialsCallback(6, states=COUNTED)) is optuna.study.MaxTrialsCallback
    assert exp_manager.MaxTrialsCallback is optuna.study.MaxTrialsCallback  # restored


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("--heartbeat-interval 5", "apply to a search"),
        ("--optimize --stor study.log --heartbeat-interval 5", "JournalFile storage study.log has no heartbeat"),
        ("-optimize --storage study.log --heartbeat-interval 5", "JournalFile storage study.log has no heartbeat"),
        ("-optimize --storage sqlite:///s.db --heartbeat-interval 5 --grace-period 5", "longer than the heartbeat interval"),
        ("-optimize --storage sqlite:///s.db --heartbeat-interval -1", "positive number of seconds"),
        ("-optimize --storage sqlite:///s.db --heartbeat-interval 0 --grace-period 9", "--grace-period needs a heartbeat"),
        ("-optimize --storage sqlite:///s.db --heartbeat-interval x", "invalid int value: 'x'"),
    ],
)
def test_heartbeat_options_are_checked(options: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli._read_options(["--algo", "reinforce", *shlex.split(options)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_train_s_own_options_are_taken_out_and_rl_zoo3_s_left_as_given() -> None:
    """What rl_zoo3's ``train`` is handed: its own arguments as given (abbreviations too), REINFORCE's heartbeat
    options taken out, and the packaged ``reinforce.yml`` as ``-conf`` for REINFORCE without one."""
    zoo_args = ["--algo", "reinforce", "--env", "Pendulum-v1", "--optimize", "--stor", "sqlite:///s.db", "-n", "5000"]
    options, rest = cli._read_options([*zoo_args, "--heartbeat-interval", "2", "--hyperparams", "n_steps:64"])
    assert rest == [*zoo_args, "--hyperparams", "n_steps:64", "-conf", default_config_path()]
    assert (options.env, options.optimize_hyperparameters, options.storage) == ("Pendulum-v1", True, "sqlite:///s.db")
    assert (options.heartbeat.interval, options.heartbeat.grace_period) == (2, 6)
    options, rest = cli._read_options(["--algo", "a2c", "-f", "logs2", "--verbose", "2"])
    assert rest == ["--algo", "a2c", "-f", "logs2", "--verbose", "2"] and options.conf_file is None
    assert (options.log_folder, options.verbose) == ("logs2", 2)
    options, rest = cli._read_options(["--algo", "reinforce", "-conf", "mine.yml"])
    assert rest == ["--algo", "reinforce", "-conf", "mine.yml"] and options.conf_file == "mine.yml"


def test_best_output_into_an_anchored_entry_moves_its_aliases_too(tmp_path: Path) -> None:
    # The shipped MuJoCo entries are anchors with a -v5 alias: `best -o` replaces the -v4 entry and the alias follows
    # (it used to refuse, or, through put_entry, leave the alias with the old values).
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    params = {"one_minus_gamma": 0.01, "learning_rate": 3e-3, "lr_schedule": "constant", "n_steps": 64, "baseline": "value"}
    params |= {"normalize_advantage": True, "ent_coef": 1e-3, "max_grad_norm": 0.5, "net_arch": "tiny"}
    params |= {"activation_fn": "tanh", "incomplete_episodes": "carry", "log_std_init": -1.0}
    study.enqueue_trial(params)
    study.optimize(lambda trial: (sample_reinforce_params(trial, 2, 1, {}), 1.0)[1], n_trials=1)
    conf = tmp_path / "reinforce.yml"
    anchored = "A-v4: &a\n  # old\n  n_envs: 8\n  n_timesteps: 1000\n  policy: MlpPolicy\n\nA-v5: *a\n"
    conf.write_text("B-v1:\n  n_envs: 2\n\n" + anchored)
    best.main(["--storage", storage, "--study-name", "s", "--env", "A-v4", "-conf", str(conf), "-o", str(conf)], "")
    written = yaml.safe_load(conf.read_text())
    assert written["B-v1"] == {"n_envs": 2}
    assert written["A-v5"] == written["A-v4"] and written["A-v4"]["n_steps"] == 64 and written["A-v4"]["n_envs"] == 8
    assert "log_std_init=-1.0" in written["A-v4"]["policy_kwargs"]
    assert conf.read_text().endswith("\nA-v5: *a\n") and "# old" not in conf.read_text()


def test_put_entry_keeps_everything_else() -> None:
    text = "# header\n\nA-v1:\n  # old best\n  n_envs: 1\n  # about A\n  lr: 1\n\n# about B\nB-v1:\n  n_envs: 2\n  x: 1.5e-3\n"
    entry = {"n_envs": 4, "n_timesteps": 1e6}
    assert best.put_entry(text, "A-v1", entry, "new best") == (
        "# header\n\nA-v1:\n  # new best\n  n_envs: 4\n  n_timesteps: 1000000.0\n\n"
        "# about B\nB-v1:\n  n_envs: 2\n  x: 1.5e-3\n"
    )
    assert best.put_entry(text, "B-v1", {"n_envs": 3}, "b").endswith("# about B\nB-v1:\n  # b\n  n_envs: 3\n")
    assert best.put_entry(text, "C-v1", {"n_envs": 5}, "c") == text + "\nC-v1:\n  # c\n  n_envs: 5\n"
    # Floats as PyYAML (rl_zoo3) reads them back: "1e5" would be a string to it.
    assert yaml.safe_load(best.put_entry("A-v1:\n  n_timesteps: !!float 1e5\n", "B-v1", {"x": 1}, "b"))["A-v1"] == {
        "n_timesteps": 100000.0
    }
    assert best.put_entry("A-v1:\n  n: 1e-5\n", "B-v1", {"x": 1}, "b").startswith("A-v1:\n  n: 1.0e-05\n")
    # A 16-digit float as Python writes it keeps its last digit (ruamel would rebuild ...687e-05 as ...686e-05).
    assert best.put_entry("A-v1:\n  x: 6.951276884757687e-05\n", "B-v1", {"x": 1}, "b").startswith(
        "A-v1:\n  x: 6.951276884757687e-05\n"
    )
    # Quotes kept, and the shipped file kept byte for byte when an entry is added.
    assert best.put_entry("A-v1:\n  policy: 'MlpPolicy'\n", "B-v1", {"x": 1}, "b").startswith("A-v1:\n  policy: 'MlpPolicy'\n")
    shipped = (Path(__file__).parent.parent / "zoo_configs" / "reinforce.yml").read_text()
    assert best.put_entry(shipped, "New-v1", {"n_envs": 1}, "new").startswith(shipped)
    # An anchored entry replaced: its aliases (the -v5 ids of the shipped file) follow it instead of keeping the old values.
    anchored = "A-v4: &a\n  # old best\n  n_envs: 1\n\nA-v5: *a\n"
    assert best.put_entry(anchored, "A-v4", {"n_envs": 4}, "new") == "A-v4: &a\n  # new\n  n_envs: 4\n\nA-v5: *a\n"
    after_alias = "S-v4: &s\n  n: 1\nS-v5: *s\n\n" + anchored  # the blank line before the key is kept
    assert best.put_entry(after_alias, "A-v4", {"n_envs": 4}, "new") == "S-v4: &s\n  n: 1\nS-v5: *s\n\n" + (
        "A-v4: &a\n  # new\n  n_envs: 4\n\nA-v5: *a\n"
    )
    replaced = yaml.safe_load(best.put_entry(shipped, "HalfCheetah-v4", {"n_envs": 4}, "new"))
    assert replaced["HalfCheetah-v5"] == replaced["HalfCheetah-v4"] == {"n_envs": 4}
    assert {key: value for key, value in replaced.items() if not key.startswith("HalfCheetah")} == {
        key: value for key, value in yaml.safe_load(shipped).items() if not key.startswith("HalfCheetah")
    }
    policy_kwargs = {"net_arch": {"pi": [64], "vf": [64]}, "activation_fn": __import__("torch").nn.Tanh, "ortho_init": False}
    assert best.python_text(policy_kwargs) == "dict(net_arch=dict(pi=[64], vf=[64]), activation_fn=nn.Tanh, ortho_init=False)"


def test_best_refuses_another_algorithm_s_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="a2c", storage=storage, direction="maximize")
    study.set_user_attr("command", "python -m rl_zoo3.train --algo a2c --env CartPole-v1 -optimize --storage x")
    params = {"one_minus_gamma": 0.01, "learning_rate": 3e-3, "lr_schedule": "constant", "n_steps": 64, "baseline": "value"}
    params |= {"normalize_advantage": True, "ent_coef": 1e-3, "max_grad_norm": 0.5, "net_arch": "tiny"}
    params |= {"activation_fn": "tanh", "incomplete_episodes": "carry"}
    study.enqueue_trial(params)  # parameters REINFORCE's converter would read: only the recorded command tells
    study.optimize(lambda trial: (sample_reinforce_params(trial, 0, 1, {}), 1.0)[1], n_trials=1)
    with pytest.raises(SystemExit, match=r"study 'a2c' is a search of --algo a2c, not of REINFORCE"):
        best.main(
            ["--storage", storage, "--study-name", "a2c"], str(Path(__file__).parent.parent / "zoo_configs" / "reinforce.yml")
        )


def test_best_reports_a_missing_file_folder_or_database_client_in_one_line(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.set_user_attr("command", "sb3-reinforce-zoo train --algo reinforce --env CartPole-v1 -optimize")
    study.optimize(lambda trial: (sample_reinforce_params(trial, 0, 1, {}), 1.0)[1], n_trials=1)
    with pytest.raises(SystemExit, match=r"-conf .*missing.yml: No such file or directory"):
        best.main(["--storage", storage, "--study-name", "s", "-conf", str(tmp_path / "missing.yml")], "")
    with pytest.raises(SystemExit, match=r"-o .*nodir/x.yml: the folder .*nodir does not exist"):
        best.main(["--storage", storage, "--study-name", "s", "-o", str(tmp_path / "nodir" / "x.yml")], "")
    if importlib.util.find_spec("psycopg2") is None:  # the client a postgresql+psycopg2:// URL asks for
        with pytest.raises(SystemExit, match=r"needs a database client that is not installed .*\[distributed\]"):
            best.main(["--storage", "postgresql+psycopg2://u@127.0.0.1:1/db", "--study-name", "s"], "")
