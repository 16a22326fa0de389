"""Saving: atomic writes that keep what the user set on the file, and policy files that load with SB3's loader or ours."""

import os
import random
import signal
import socket
import subprocess
import sys
import time
from unittest import mock

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_reinforce import REINFORCE
from sb3_reinforce.reinforce import MlpPolicy


def test_a_policy_file_without_reinforce_options_loads_with_sb3s_policy(tmp_path):
    model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=16, seed=0)
    model.policy.save(tmp_path / "policy.pth")
    policy = ActorCriticPolicy.load(tmp_path / "policy.pth")
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(policy.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_a_policy_file_with_reinforce_options_names_its_loader(tmp_path):
    model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=16, seed=0, policy_kwargs=dict(action_prob_floor=0.1))
    model.policy.save(tmp_path / "policy.pth")
    with pytest.raises(TypeError, match=r"load this file with sb3_reinforce\.reinforce\.MlpPolicy\.load"):
        ActorCriticPolicy.load(tmp_path / "policy.pth")
    policy = MlpPolicy.load(tmp_path / "policy.pth")
    assert policy.action_prob_floor == 0.1 and policy.min_std == 0.0
    for ours, theirs in zip(policy.state_dict().values(), model.policy.state_dict().values(), strict=True):
        assert th.equal(ours, theirs)


SAVING_FOREVER = """
import sys
import torch as th
from sb3_reinforce import REINFORCE

th.set_num_threads(1)
model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=8, seed=0, policy_kwargs=dict(net_arch=[1024, 1024, 1024]))
model.save(sys.argv[1])
print("saved", flush=True)
while True:
    model.save(sys.argv[1])
"""


@pytest.mark.slow
def test_a_process_killed_while_saving_leaves_the_previous_save_loadable(tmp_path):
    """SIGKILL at a random moment while a large model is saved again and again (8 times out of 8 on SB3's save)."""
    generator = random.Random(0)
    left_behind = 0
    for attempt in range(8):
        path = tmp_path / f"attempt{attempt}" / "model"  # the suffix-less form: SB3 adds .zip
        process = subprocess.Popen([sys.executable, "-c", SAVING_FOREVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None and process.stdout.readline().strip() == "saved"
        time.sleep(generator.uniform(0.05, 0.8))
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
        model = REINFORCE.load(path.with_suffix(".zip"))
        assert model.policy.mlp_extractor.policy_net[0].out_features == 1024
        # The killed save's temporary file is removed by the next save to the same path.
        left_behind += len(list(path.parent.glob(".model.zip.*.tmp")))
        model.save(path)
        assert [file.name for file in path.parent.iterdir()] == ["model.zip"]
    assert left_behind > 0  # most kills land during a save


def test_an_exception_during_a_save_keeps_the_previous_save_and_leaves_no_temporary_file(tmp_path):
    model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=16, seed=0)
    model.save(tmp_path / "model")
    before = (tmp_path / "model.zip").read_bytes()
    model.learn(16)

    def failing_save(obj, file, *args, **kwargs):
        file.write(b"partial")
        raise OSError("disk full")

    with mock.patch("stable_baselines3.common.save_util.th.save", failing_save), pytest.raises(OSError, match="disk full"):
        model.save(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.zip"]
    assert (tmp_path / "model.zip").read_bytes() == before
    REINFORCE.load(tmp_path / "model.zip")


def test_a_save_keeps_the_symlink_and_the_permissions_and_removes_dead_saves_temporary_files(tmp_path):
    model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=16, seed=0)
    real = tmp_path / "store" / "model.zip"
    model.save(real)
    real.chmod(0o600)
    link = tmp_path / "latest.zip"
    link.symlink_to(real)
    model.learn(16)
    model.save(link)
    assert link.is_symlink() and link.resolve() == real.resolve()  # the link still points to the file, now replaced
    assert REINFORCE.load(link).num_timesteps == 16 and REINFORCE.load(real).num_timesteps == 16
    assert oct(real.stat().st_mode & 0o777) == oct(0o600)

    # A temporary file of a save whose process died is removed; a running process's save keeps its own.
    child = os.fork()  # a process that ends at once: its PID no longer runs
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    dead = real.parent / f".model.zip.{socket.gethostname()}.{child}.k1ll3d.tmp"
    running = real.parent / f".model.zip.{socket.gethostname()}.{os.getpid()}.s4v1ng.tmp"
    dead.write_bytes(b"partial")
    running.write_bytes(b"partial")
    model.save(link)
    assert not dead.exists() and running.exists()


def test_save_writes_paths_and_file_objects(tmp_path):
    model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=16, seed=0)
    model.save(str(tmp_path / "sub" / "model"))  # missing folder created, .zip added, as in SB3
    model.save(tmp_path / "named.zip")
    with open(tmp_path / "object.zip", "wb") as file:
        model.save(file)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["model.zip", "named.zip", "object.zip"]
    for path in ("sub/model.zip", "named.zip", "object.zip"):
        assert REINFORCE.load(tmp_path / path).n_steps == 16
    assert oct((tmp_path / "named.zip").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
