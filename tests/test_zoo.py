"""The rl_zoo3 entry really runs: train, enjoy, hyper-parameters from the yml, errors, optimisation, shared studies."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rl_zoo3", reason="the zoo extra is not installed: pip install -e '.[test,zoo]'")
optuna = pytest.importorskip("optuna")

from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402
from stable_baselines3.common.vec_env import VecNormalize  # noqa: E402

from sb3_reinforce import REINFORCE  # noqa: E402
from tests.zoo_workers import ENV, search_command, zoo  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def optimize(cwd: Path, storage: str, study: str, trials: int) -> subprocess.Popen:
    """Start one optimisation worker: ``trials`` short trials of REINFORCE on CartPole."""
    args = [*search_command(storage, study, seed=0), "--n-trials", str(trials)]
    return subprocess.Popen(args, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_train_then_load_then_enjoy(tmp_path):
    zoo("train --algo reinforce --env CartPole-v1 -n 1024 -f logs --seed 0 --eval-freq -1 --num-threads 1", tmp_path)
    model_path = Path("logs") / "reinforce" / "CartPole-v1_1" / "CartPole-v1.zip"
    model = REINFORCE.load(tmp_path / model_path)
    assert model.num_timesteps >= 1024
    result = zoo("enjoy --algo reinforce --env CartPole-v1 -f logs -n 200 --no-render --num-threads 1", tmp_path)
    assert f"Loading {model_path}" in result.stdout
    assert "Episode Reward:" in result.stdout  # at least one episode played to its end


def test_hyperparameters_from_the_yml_reach_the_model(tmp_path):
    conf = tmp_path / "custom.yml"
    conf.write_text(
        "CartPole-v1:\n  n_envs: 2\n  n_timesteps: 256\n  policy: 'MlpPolicy'\n  n_steps: 16\n  gamma: 0.95\n"
        "  baseline: 'none'\n  incomplete_episodes: 'drop'\n  learning_rate: 0.002\n"
    )
    # --conf: an abbreviation of --conf-file, which rl_zoo3 accepts (the packaged file must not replace it)
    zoo(f"train --algo reinforce --env CartPole-v1 --conf {conf} -f logs --eval-freq -1", tmp_path)
    model = REINFORCE.load(tmp_path / "logs" / "reinforce" / "CartPole-v1_1" / "CartPole-v1.zip")
    settings = (model.n_steps, model.gamma, model.baseline, model.incomplete_episodes, model.n_envs)
    assert settings == (16, 0.95, "none", "drop", 2)


def test_unknown_env_and_malformed_yml_give_clear_errors(tmp_path):
    result = zoo("train --algo reinforce --env NoSuchEnv-v9 -n 64", tmp_path, check=False)
    assert result.returncode != 0 and "NoSuchEnv-v9 not found" in result.stderr
    conf = tmp_path / "bad.yml"
    conf.write_text("CartPole-v1: {n_envs: 2, policy: [unclosed\n")
    result = zoo(f"train --algo reinforce --env CartPole-v1 -conf {conf}", tmp_path, check=False)
    assert result.returncode != 0 and f"Malformed hyper-parameter file {conf}" in result.stderr


SHIPPED = yaml.safe_load((REPO / "zoo_configs" / "reinforce.yml").read_text())
MUJOCO = (
    "HalfCheetah",
    "Hopper",
    "Walker2d",
    "Swimmer",
    "Ant",
    "Humanoid",
    "Reacher",
    "InvertedPendulum",
    "InvertedDoublePendulum",
)
MUJOCO_ENTRIES = [env for env in SHIPPED if env.split("-")[0] in MUJOCO and env.endswith("-v4")]


def test_each_mujoco_v5_id_has_its_v4_entry():
    """rl_zoo3 keys MuJoCo by -v4; gymnasium 1.x users type -v5: the same hyper-parameters under both ids."""
    v5_ids = [env for env in SHIPPED if env.split("-")[0] in MUJOCO and env.endswith("-v5")]
    assert sorted(env.replace("-v5", "-v4") for env in v5_ids) == sorted(MUJOCO_ENTRIES)
    assert all(SHIPPED[env] == SHIPPED[env.replace("-v5", "-v4")] for env in v5_ids)


@pytest.mark.parametrize("env_id", MUJOCO_ENTRIES)
def test_mujoco_entries_train_load_and_evaluate(tmp_path, monkeypatch, env_id):
    """Each shipped MuJoCo entry trains a few thousand steps through the zoo, loads and evaluates (the -v5 ids alias
    these entries: test_each_mujoco_v5_id_has_its_v4_entry)."""
    pytest.importorskip("mujoco", reason="the mujoco extra is not installed: pip install -e '.[test,mujoco]'")
    monkeypatch.chdir(tmp_path)  # MuJoCo writes its warnings to MUJOCO_LOG.TXT in the working directory
    zoo(f"train --algo reinforce --env {env_id} -n 4096 -f logs --seed 0 --eval-freq -1 --num-threads 1", tmp_path)
    run = tmp_path / "logs" / "reinforce" / f"{env_id}_1"
    model = REINFORCE.load(run / f"{env_id}.zip", device="cpu")
    entry = SHIPPED[env_id]
    assert model.num_timesteps >= 4096 and model.n_envs == entry["n_envs"]
    assert (model.n_steps, model.gamma, model.incomplete_episodes) == (
        entry["n_steps"],
        entry["gamma"],
        entry["incomplete_episodes"],
    )
    env = VecNormalize.load(str(run / env_id / "vecnormalize.pkl"), make_vec_env(env_id, n_envs=1, seed=0))
    env.training, env.norm_reward = False, False
    mean_return, _ = evaluate_policy(model, env, n_eval_episodes=1, deterministic=True)
    assert np.isfinite(mean_return)


def test_a2c_through_the_same_entry(tmp_path):
    zoo("train --algo a2c --env CartPole-v1 -n 256 -f logs --eval-freq -1", tmp_path)
    assert (tmp_path / "logs" / "a2c" / "CartPole-v1_1" / "CartPole-v1.zip").exists()


def test_optimize_two_trials_on_a_journal_storage(tmp_path):
    storage = str(tmp_path / "study.log")
    worker = optimize(tmp_path, storage, "single", trials=2)
    output, _ = worker.communicate(timeout=300)
    assert worker.returncode == 0, output[-3000:]
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    study = optuna.load_study(study_name="single", storage=journal)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    assert {"baseline", "incomplete_episodes", "learning_rate", "n_steps"} <= set(complete[0].params)
    assert "log_std_init" not in complete[0].params  # a Discrete action space has no action noise to search


def test_a_search_on_a_box_action_space_samples_the_initial_action_noise(tmp_path):
    """rl_zoo3 tells the sampler the action dimension for Box spaces only: there it samples ``log_std_init``."""
    from sb3_reinforce.zoo.hyperparams_opt import convert_reinforce_params, sample_reinforce_params

    storage = str(tmp_path / "study.log")
    command = search_command(storage, "box", seed=0, timesteps=256)
    command[command.index("CartPole-v1")] = "Pendulum-v1"
    worker = subprocess.run([*command, "--n-trials", "1"], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert worker.returncode == 0, (worker.stdout + worker.stderr)[-3000:]
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    (trial,) = optuna.load_study(study_name="box", storage=journal).trials
    assert -4.0 <= trial.params["log_std_init"] <= 1.0
    # The best trial's yml entry and the trial's own model both start from that noise.
    assert convert_reinforce_params(trial.params)["policy_kwargs"]["log_std_init"] == trial.params["log_std_init"]
    sampled = sample_reinforce_params(optuna.trial.FixedTrial(trial.params), n_actions=1, n_envs=1, additional_args={})
    model = REINFORCE("MlpPolicy", "Pendulum-v1", **sampled)
    assert model.policy.log_std.detach().numpy() == pytest.approx([trial.params["log_std_init"]])


def test_two_workers_share_one_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="shared", storage=storage, direction="maximize")
    workers = [optimize(tmp_path, storage, "shared", trials=2) for _ in range(2)]
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), [output[-2000:] for output in outputs]
    # Each worker runs exactly its own 2 trials, so 4 complete trials in the one study means both contributed.
    study = optuna.load_study(study_name="shared", storage=storage)
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 4


def test_a_normal_install_ships_the_config(tmp_path):
    """The wheel (``pip install .``, not editable) carries ``zoo_configs/reinforce.yml`` inside the package, where
    ``default_config_path`` finds it."""
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    (wheel,) = tmp_path.glob("sb3_reinforce-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("sb3_reinforce/zoo/configs/reinforce.yml").decode()
    assert shipped == (REPO / "zoo_configs" / "reinforce.yml").read_text()


def test_sampled_linear_learning_rate_decays_and_becomes_a_lin_entry(tmp_path):
    """``lr_schedule="linear"``: the trial's model gets a decaying learning rate, its yml entry ``lin_<lr>``."""
    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_reinforce.zoo.hyperparams_opt import convert_reinforce_params, sample_reinforce_params

    params = {
        "one_minus_gamma": 0.01,
        "learning_rate": 3e-3,
        "lr_schedule": "linear",
        "n_steps": 32,
        "baseline": "value",
        "normalize_advantage": False,
        "ent_coef": 1e-3,
        "max_grad_norm": 0.5,
        "net_arch": "tiny",
        "activation_fn": "tanh",
        "incomplete_episodes": "carry",
    }
    sampled = sample_reinforce_params(optuna.trial.FixedTrial(params), n_actions=0, n_envs=1, additional_args={})
    model = REINFORCE("MlpPolicy", "CartPole-v1", **sampled)
    assert model.lr_schedule(1.0) == pytest.approx(3e-3)
    assert model.lr_schedule(0.25) == pytest.approx(0.75e-3)
    entry = convert_reinforce_params(params)
    assert entry["learning_rate"] == "lin_0.003"
    # rl_zoo3 reads the entry back into the same schedule.
    schedule = ExperimentManager._preprocess_schedules({"learning_rate": entry["learning_rate"]})["learning_rate"]
    assert schedule(0.25) == pytest.approx(model.lr_schedule(0.25))
    # Trials of studies made before lr_schedule was searched keep a constant learning rate.
    old = {key: value for key, value in params.items() if key != "lr_schedule"}
    assert convert_reinforce_params(old)["learning_rate"] == 3e-3
    constant = sample_reinforce_params(optuna.trial.FixedTrial(old | {"lr_schedule": "constant"}), 0, 1, {})
    assert constant["learning_rate"] == 3e-3


def test_a_storage_password_moves_to_the_environment_before_rl_zoo3_records_the_command(monkeypatch, capsys):
    from sb3_reinforce.zoo import cli

    monkeypatch.delenv("PGPASSWORD", raising=False)
    url = "postgresql://worker:hunter2@db.example:5432/optuna"
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "sb3_reinforce.zoo", "train", "--storage", url])
    args = cli._without_password(["--algo", "reinforce", "--storage", url, "--study-name", "s"])
    assert args == ["--algo", "reinforce", "--storage", "postgresql://worker@db.example:5432/optuna", "--study-name", "s"]
    assert os.environ["PGPASSWORD"] == "hunter2" and "hunter2" not in " ".join(sys.orig_argv)
    assert cli._without_password(["--storage=sqlite:///s.db"]) == ["--storage=sqlite:///s.db"]
    with pytest.raises(SystemExit) as exit_info:
        cli._without_password(["--storage", "mysql://worker:hunter2@db.example/optuna"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "a password in the URL would be recorded" in error and "hunter2" not in error


def test_help_without_the_zoo_installed_gives_the_install_hint(monkeypatch):
    from sb3_reinforce.zoo import cli

    monkeypatch.setitem(sys.modules, "optuna", None)  # as on a core install: importing optuna fails
    monkeypatch.delitem(sys.modules, "sb3_reinforce.zoo.storage", raising=False)
    with pytest.raises(SystemExit, match=r"The RL Zoo is not installed .*pip install 'sb3-reinforce\[zoo\]'"):
        cli.main(["--help"])


@pytest.mark.slow
def test_record_training_records_each_checkpoint_of_a_reinforce_run(tmp_path: Path) -> None:
    """rl_zoo3 records each checkpoint with `python -m rl_zoo3.record_video`, where REINFORCE is not registered."""
    zoo("train --algo reinforce --env CartPole-v1 -n 2000 --save-freq 1000 -f logs --num-threads 1", tmp_path)
    env = {**ENV, "SDL_VIDEODRIVER": "dummy"}
    command = [sys.executable, "-m", "sb3_reinforce.zoo", "record_training", "--algo", "reinforce", "--env", "CartPole-v1"]
    command += ["-f", "logs", "--exp-id", "1", "-n", "20"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "invalid choice" not in result.stderr, result.stderr[-2000:]
    videos = sorted(path.name for path in (tmp_path / "logs" / "reinforce" / "CartPole-v1_1" / "videos").glob("*.mp4"))
    assert [name.split("-step")[0] for name in videos if "_with_text" not in name] == [
        "checkpoint-1000-reinforce-CartPole-v1",
        "checkpoint-2000-reinforce-CartPole-v1",
        "final-model-reinforce-CartPole-v1",
    ], result.stderr[-2000:]
    if shutil.which("ffmpeg"):  # rl_zoo3 joins them with the ffmpeg program
        assert result.returncode == 0 and "training.mp4" in videos, result.stderr[-2000:]
