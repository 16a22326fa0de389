"""Loading runs no code from a file: real payloads are refused before they run, every file the library writes loads."""

import base64
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch as th
from rl_zoo3.utils import linear_schedule
from stable_baselines3.common.utils import LinearSchedule, get_linear_fn

from sb3_reinforce import REINFORCE
from sb3_reinforce.reinforce import MlpPolicy
from sb3_reinforce.reinforce.save_file import MAX_DATA_BYTES, CodeInFileError


class Payload:
    """Unpickled, it writes a file: what an attacker's model file would do (here only to show whether it ran)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return exec, (f"open({str(self.target)!r}, 'w').write('ran')",)


def _rewrite(source: Path, target: Path, **members: bytes) -> Path:
    """A copy of the zip ``source`` with some members replaced."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as copy:
        for name in original.namelist():
            copy.writestr(name, members.get(name, original.read(name)))
    return target


def _data(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("data"))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=16, seed=0)
    model.learn(32)
    model.save(tmp_path / "model.zip")
    return tmp_path / "model.zip"


@pytest.mark.parametrize("key", ["observation_space", "extra_entry"])
def test_a_data_entry_that_runs_code_is_refused_before_it_runs(saved: Path, tmp_path: Path, key: str) -> None:
    ran = tmp_path / "ran"
    data = _data(saved)
    data[key] = {":type:": "<class 'Payload'>", ":serialized:": base64.b64encode(pickle.dumps(Payload(ran))).decode()}
    evil = _rewrite(saved, tmp_path / "evil.zip", data=json.dumps(data).encode())
    with pytest.raises(
        CodeInFileError, match=rf"its data entry '{key}' needs builtins.exec, which is code; nothing of it ran"
    ):
        REINFORCE.load(evil)
    assert not ran.exists()
    if key == "extra_entry":  # the opt-in is SB3's behaviour: it unpickles, and so runs, what the file holds
        REINFORCE.load(evil, trusted=True)
        assert ran.read_text() == "ran"


def test_weights_that_run_code_are_refused_and_not_called_damaged(saved: Path, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    buffer = io.BytesIO()
    th.save({"weight": Payload(ran)}, buffer)
    evil = _rewrite(saved, tmp_path / "evil.zip", **{"policy.pth": buffer.getvalue()})
    with pytest.raises(CodeInFileError, match=r"its weights need (builtins\.)?exec, which is code"):
        REINFORCE.load(evil)
    assert not ran.exists()


def test_a_policy_file_that_runs_code_is_refused(tmp_path: Path) -> None:
    model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=16, seed=0, policy_kwargs=dict(action_prob_floor=0.1))
    model.policy.save(tmp_path / "policy.pth")
    loaded = MlpPolicy.load(tmp_path / "policy.pth")  # the library's own policy files load without code
    obs = np.zeros((3, 4), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    saved = th.load(tmp_path / "policy.pth", weights_only=False)
    ran = tmp_path / "ran"
    saved["data"]["lr_schedule"] = Payload(ran)
    th.save(saved, tmp_path / "evil.pth")
    with pytest.raises(CodeInFileError, match=r"evil.pth: it needs (__builtin__|builtins)\.exec, which is code"):
        MlpPolicy.load(tmp_path / "evil.pth")
    assert not ran.exists()


def test_schedules_and_policy_classes_the_library_writes_load_without_code(tmp_path: Path) -> None:
    kwargs = dict(activation_fn=th.nn.ReLU, optimizer_class=th.optim.RMSprop, net_arch=dict(pi=[8], vf=[8]))
    for name, learning_rate in [("zoo", linear_schedule(1e-3)), ("sb3", LinearSchedule(1e-3, 1e-4, 0.5)), ("float", 3e-4)]:
        model = REINFORCE("MlpPolicy", "Pendulum-v1", n_steps=16, learning_rate=learning_rate, policy_kwargs=kwargs, seed=0)
        model.learn(64)
        model.save(tmp_path / f"{name}.zip")
        loaded = REINFORCE.load(tmp_path / f"{name}.zip")
        assert loaded.lr_schedule(0.5) == pytest.approx(model.lr_schedule(0.5))
        assert loaded.policy.optimizer.__class__ is th.optim.RMSprop and loaded.policy_kwargs["activation_fn"] is th.nn.ReLU
        np.testing.assert_array_equal(loaded._last_obs, model._last_obs)


def test_a_schedule_stored_as_code_is_named_with_the_ways_on(tmp_path: Path) -> None:
    model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=16, learning_rate=get_linear_fn(1e-3, 1e-4, 1.0), seed=0)
    model.save(tmp_path / "model.zip")
    with pytest.raises(CodeInFileError, match=r"its data entry 'learning_rate' needs cloudpickle\..*trusted=True"):
        REINFORCE.load(tmp_path / "model.zip")
    frozen = REINFORCE.load(tmp_path / "model.zip", custom_objects={"learning_rate": 0.0, "lr_schedule": lambda _: 0.0})
    assert frozen.lr_schedule(1.0) == 0.0
    assert REINFORCE.load(tmp_path / "model.zip", trusted=True).lr_schedule(1.0) == pytest.approx(1e-3)


def test_a_data_entry_over_the_size_limit_is_refused_unread(saved: Path, tmp_path: Path) -> None:
    data = _data(saved)
    data["padding"] = "x" * (MAX_DATA_BYTES + 1)
    bomb = _rewrite(saved, tmp_path / "bomb.zip", data=json.dumps(data).encode())
    assert bomb.stat().st_size < 2 * 2**20  # small on disk
    with pytest.raises(ValueError, match=r"its 'data' entry unpacks to 64 MiB, more than a model's ever needs"):
        REINFORCE.load(bomb)


def test_each_damaged_part_is_named(saved: Path, tmp_path: Path) -> None:
    data = _data(saved)
    data["observation_space"][":serialized:"] = base64.b64encode(b"\x80\x05garbage").decode()
    garbage = _rewrite(saved, tmp_path / "garbage.zip", data=json.dumps(data).encode())
    with pytest.raises(ValueError, match=r"is damaged: its data entry 'observation_space' cannot be read"):
        REINFORCE.load(garbage)

    other = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=16, seed=0, policy_kwargs=dict(net_arch=[7]))
    other.save(tmp_path / "other.zip")
    with zipfile.ZipFile(tmp_path / "other.zip") as archive:
        weights = archive.read("policy.pth")
    mismatch = _rewrite(saved, tmp_path / "mismatch.zip", **{"policy.pth": weights})
    with pytest.raises(ValueError, match=r"weights that do not fit the network its data describes \(observation space Box"):
        REINFORCE.load(mismatch)

    model = REINFORCE.load(saved)
    with th.no_grad():
        model.policy.action_net.weight[0, 0] = float("nan")
    model.save(tmp_path / "nan_weights.zip")
    with pytest.raises(ValueError, match=r"non-finite network weights \(policy.pth: action_net.weight\)"):
        REINFORCE.load(tmp_path / "nan_weights.zip")
    model = REINFORCE.load(saved)
    model._return_moments = (float("nan"), 1.0)
    model.save(tmp_path / "nan_moments.zip")
    with pytest.raises(ValueError, match=r"non-finite running return moments"):
        REINFORCE.load(tmp_path / "nan_moments.zip")


def test_an_unsupported_compression_method_is_a_damaged_file(saved: Path, tmp_path: Path) -> None:
    raw = bytearray(saved.read_bytes())
    # The 'data' member's compression method, in its local header and in the central directory: 99 (AES), unsupported.
    with zipfile.ZipFile(saved) as archive:
        info = archive.getinfo("data")
    raw[info.header_offset + 8 : info.header_offset + 10] = (99).to_bytes(2, "little")
    central = raw.rfind(b"PK\x01\x02" + raw[info.header_offset + 4 : info.header_offset + 6])
    while raw[central + 46 : central + 46 + 4] != b"data":
        central = raw.rfind(b"PK\x01\x02", 0, central)
    raw[central + 10 : central + 12] = (99).to_bytes(2, "little")
    (tmp_path / "method.zip").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"not a model saved with save\(\) \(a zip file\)"):
        REINFORCE.load(tmp_path / "method.zip")


def test_vec_normalize_statistics_load_without_code(tmp_path: Path) -> None:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_reinforce import load_vec_normalize

    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    REINFORCE("MlpPolicy", env, n_steps=16, seed=0).learn(64)
    env.save(str(tmp_path / "vecnormalize.pkl"))
    loaded = load_vec_normalize(tmp_path / "vecnormalize.pkl", make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    np.testing.assert_array_equal(loaded.obs_rms.mean, env.obs_rms.mean)
    assert loaded.ret_rms.count == env.ret_rms.count and loaded.num_envs == 2

    ran = tmp_path / "ran"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Payload(ran)))
    with pytest.raises(CodeInFileError, match=r"evil.pkl: it needs builtins.exec, which is code"):
        load_vec_normalize(tmp_path / "evil.pkl", make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    assert not ran.exists()


def test_a_member_that_fails_its_checksum_is_named(saved: Path, tmp_path: Path) -> None:
    raw = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as archive:
        info = archive.getinfo("policy.pth")
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    raw[middle] ^= 0xFF
    (tmp_path / "flipped.zip").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"is damaged: its member 'policy.pth' does not match its checksum \(CRC\)"):
        REINFORCE.load(tmp_path / "flipped.zip")
