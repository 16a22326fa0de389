"""
Every argument is checked, on every way in, as the constructor checks it: the constructor, load with kwargs and
custom_objects, the zoo's ``train`` (``-params``, ``-i``), ``best``, type checkers. Each case is written the way a
user meets it.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from stable_baselines3.common.env_util import make_vec_env

from sb3_reinforce import REINFORCE
from sb3_reinforce.reinforce.checks import NOT_REINFORCE_ARGUMENTS
from tests.zoo_workers import zoo

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "half.zip"
    REINFORCE("MlpPolicy", "CartPole-v1", n_steps=64, seed=0).save(path)
    return path


@pytest.mark.parametrize(
    ("load_kwargs", "message"),
    [
        (dict(custom_objects={"baseline": "valeu"}), "baseline must be one of 'none', 'mean', 'value', got 'valeu'"),
        (dict(gamma=7.0), r"gamma must be a number in \[0, 1\], got 7.0"),
        (
            dict(custom_objects={"incomplete_episodes": "bootstrap", "baseline": "mean"}),
            "incomplete_episodes='bootstrap' needs a critic",
        ),
    ],
)
def test_load_checks_kwargs_and_custom_objects_as_the_constructor_does(saved, load_kwargs, message):
    env = make_vec_env("CartPole-v1", n_envs=2)
    with pytest.raises(ValueError, match=message):
        REINFORCE.load(saved, env=env, **load_kwargs)


@pytest.mark.parametrize("name", sorted(NOT_REINFORCE_ARGUMENTS))
def test_a2c_and_ppo_arguments_say_why_they_do_not_apply(saved, name):
    with pytest.raises(TypeError, match=rf"REINFORCE\(\) got '{name}', an A2C/PPO argument that REINFORCE does not"):
        REINFORCE("MlpPolicy", "CartPole-v1", **{name: 1})
    with pytest.raises(TypeError, match=rf"REINFORCE.load\(\) got '{name}'"):
        REINFORCE.load(saved, **{name: 1})
    # custom_objects only replace saved entries (rl_zoo3's enjoy passes clip_range and learning_rate=0 for any algorithm)
    model = REINFORCE.load(saved, custom_objects={name: 1, "learning_rate": 0.0, "lr_schedule": lambda _: 0.0})
    assert model.learning_rate == 0.0


@pytest.mark.parametrize(
    ("name", "counterpart"),
    [("gae_lambda", "baseline='value' with incomplete_episodes='bootstrap'"),
     ("use_rms_prop", "policy_kwargs=dict(optimizer_class=th.optim.RMSprop)")],
)  # fmt: skip
def test_the_a2c_argument_messages_name_the_reinforce_counterpart(name, counterpart):
    with pytest.raises(TypeError) as error:
        REINFORCE("MlpPolicy", "CartPole-v1", **{name: 1})
    assert counterpart in str(error.value)


def test_any_other_unknown_argument_gets_python_s_error():
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_stepz'"):  # any other name: Python's error
        REINFORCE("MlpPolicy", "CartPole-v1", n_stepz=3)


def test_an_unknown_baseline_set_after_construction_fails_loudly():
    model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=16, baseline="mean", seed=0)
    model.baseline = "valeu"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="baseline must be one of"):
        model.learn(256)  # the first update after an episode ends


@pytest.mark.slow  # runs the zoo's command line in a subprocess
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("n_steps:0", "n_steps must be an integer >= 1, got 0"),
    ],
)
def test_zoo_continue_training_checks_params_before_training_or_writing(tmp_path, saved, params, message):
    pytest.importorskip("rl_zoo3")
    result = zoo(
        f"train --algo reinforce --env CartPole-v1 -i {saved} -n 256 -f logs --num-threads 1 -params {params}",
        tmp_path,
        check=False,
    )
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
    assert not list(tmp_path.rglob("config.yml")) and not list(tmp_path.rglob("*.zip"))


@pytest.mark.slow  # runs the zoo's command line in a subprocess
@pytest.mark.parametrize("params", ["gamma:1.5", "unknown_key:1"])
def test_zoo_train_with_bad_params_says_so_in_one_line_and_leaves_no_run_folder(tmp_path, params):
    pytest.importorskip("rl_zoo3")
    command = f"train --algo reinforce --env CartPole-v1 -n 256 -f logs --num-threads 1 -params {params}"
    result = zoo(command, tmp_path, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    name = params.strip('"').split(":")[0]
    assert result.stderr.startswith("sb3-reinforce-zoo train: ") and name in result.stderr.splitlines()[-1]
    assert list((tmp_path / "logs" / "reinforce").iterdir()) == []  # the next plain enjoy finds no empty run
    verbose = zoo(f"{command} --verbose 2", tmp_path, check=False)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


@pytest.mark.slow  # runs the zoo's command line in a subprocess
@pytest.mark.parametrize("storage", ["sqlite:///missing.db", "missing.log"])
def test_best_on_a_missing_storage_says_so_and_creates_nothing(tmp_path, storage):
    pytest.importorskip("optuna")
    result = zoo(f"best --storage {storage} --study-name s", tmp_path, check=False)
    assert result.returncode == 1
    assert f"The storage {storage} does not exist" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # runs the zoo's command line in a subprocess
def test_zoo_without_a_command_prints_its_usage_and_a_wrong_one_is_a_usage_error(tmp_path):
    result = zoo("", tmp_path, check=False)
    assert result.returncode == 0 and result.stdout.startswith("usage: sb3-reinforce-zoo COMMAND")
    result = zoo("trian", tmp_path, check=False)
    assert result.returncode == 2 and "unknown command 'trian'" in result.stderr


@pytest.mark.slow
def test_mypy_checks_a_user_script_against_the_installed_package(tmp_path):
    """The README's editable install is a path entry: mypy finds the package and its py.typed from anywhere."""
    pytest.importorskip("mypy")
    script = tmp_path / "user_script.py"
    script.write_text(
        textwrap.dedent(
            """
            from sb3_reinforce import REINFORCE

            good = REINFORCE("MlpPolicy", "CartPole-v1", baseline="mean", incomplete_episodes="drop")
            bad = REINFORCE("MlpPolicy", "CartPole-v1", baseline="valeu")
            """
        )
    )
    command = [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", script.name]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "Cannot find implementation or library stub" not in result.stdout, result.stdout
    assert result.returncode == 1, result.stdout
    assert 'user_script.py:5: error: Argument "baseline" to "REINFORCE" has incompatible type' in result.stdout
    assert result.stdout.count("error:") == 1, result.stdout


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(gamma=1.5), ValueError, r"gamma must be a number in \[0, 1\], got 1.5"),
        (dict(gamma=-0.1), ValueError, "gamma must be"),
        (dict(n_steps=0), ValueError, "n_steps must be an integer >= 1, got 0"),
        (dict(n_steps=2.5), ValueError, "n_steps must be an integer"),
        (dict(baseline="critic"), ValueError, "baseline must be one of 'none', 'mean', 'value'"),
        (dict(incomplete_episodes="keep"), ValueError, "incomplete_episodes must be one of 'carry', 'drop', 'bootstrap'"),
        (dict(incomplete_episodes="bootstrap", baseline="mean"), ValueError, "incomplete_episodes='bootstrap' needs a critic"),
        (dict(learning_rate=-1.0), ValueError, "learning_rate must be"),
        (dict(ent_coef=-0.1), ValueError, "ent_coef must be"),
        (dict(vf_coef=float("nan")), ValueError, "vf_coef must be"),
        (dict(max_grad_norm=0.0), ValueError, "max_grad_norm must be"),
        (dict(incomplete_episodes="drop", max_grad_norm=-1.0), ValueError, "max_grad_norm must be a positive finite number"),
        (dict(carry_ratio_clip=0.0), ValueError, "carry_ratio_clip must be"),
        (dict(carry_max_steps=0), ValueError, "carry_max_steps must be"),
        (dict(normalize_advantage="yes"), TypeError, "normalize_advantage must be True or False, got 'yes'"),
        (dict(normalize_advantage=None), TypeError, "normalize_advantage must be True or False, got None"),
        (dict(sde_sample_freq="x"), ValueError, "sde_sample_freq must be an integer >= 1, or -1"),
        (dict(stats_window_size=0), ValueError, "stats_window_size must be an integer >= 1, got 0"),
        (dict(seed="a"), ValueError, "seed must be an integer >= 0 or None, got 'a'"),
        (dict(seed=-1), ValueError, "seed must be an integer >= 0 or None, got -1"),
        (dict(verbose="x"), ValueError, "verbose must be an integer >= 0"),
        (dict(device="foo"), ValueError, "device must be 'auto', a torch.device or a device name"),
        (dict(tensorboard_log=3), TypeError, r"tensorboard_log must be a folder \(str or path\) or None, got 3"),
        (dict(rollout_buffer_class=3), TypeError, "rollout_buffer_class must be a subclass of ReinforceRolloutBuffer"),
        (dict(rollout_buffer_kwargs=[1]), TypeError, r"rollout_buffer_kwargs must be a dict of keyword arguments or None"),
        (dict(policy_kwargs="big"), TypeError, "policy_kwargs must be a dict of keyword arguments or None, got 'big'"),
        (dict(policy=3), TypeError, "policy must be 'MlpPolicy', 'CnnPolicy', 'MultiInputPolicy' or a subclass"),
        (dict(env=42), TypeError, r"env must be a gymnasium.Env, a VecEnv or a registered env id \(str\), got 42"),
        (dict(policy_kwargs=dict(net_arch="big")), ValueError, r"policy_kwargs\['net_arch'\] must be a list of layer sizes"),
        (dict(policy_kwargs=dict(net_arch=dict(pi=[8], critic=[8]))), ValueError, r"got \{'pi': \[8\], 'critic': \[8\]\}"),
    ],
)
def test_every_constructor_argument_is_checked(kwargs, error, message):
    with pytest.raises(error, match=message):
        REINFORCE(**{"policy": "MlpPolicy", "env": "CartPole-v1", **kwargs})


@pytest.mark.slow  # runs the zoo's command line in a subprocess
def test_zoo_train_that_fails_while_learning_keeps_its_run_folder(tmp_path):
    """A run that trained before it failed (here a diverging learning rate) keeps its logs; the error is one line."""
    pytest.importorskip("rl_zoo3")
    params = "learning_rate:1e6 \"policy_kwargs:'dict(activation_fn=nn.ReLU)'\""
    command = f"train --algo reinforce --env CartPole-v1 -n 20000 -f logs --num-threads 1 -params {params}"
    result = zoo(command, tmp_path, check=False)
    assert result.returncode == 1 and "learning_rate=1e+06 now" in result.stderr, result.stderr[-2000:]
    assert [path.name for path in (tmp_path / "logs" / "reinforce").iterdir()] == ["CartPole-v1_1"]
