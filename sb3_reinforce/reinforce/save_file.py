"""
Save files: what ``REINFORCE.load`` checks before SB3 reads a file, how it reads the file's objects without running
code from it, the errors it translates while SB3 reads it, and the atomic write behind ``REINFORCE.save`` (a crash
during a save never destroys the previous save).

A model file is code to SB3: it stores what JSON cannot hold (spaces, schedules, classes in ``policy_kwargs``) as
pickles, and unpickling runs whatever the pickle names. Here those entries are read by :class:`RestrictedUnpickler`,
which builds only an allow-list of types (:func:`is_allowed`): numbers and containers, numpy arrays and dtypes,
gymnasium spaces, SB3's and rl_zoo3's schedule classes, torch activation, layer and optimizer classes, SB3's features
extractors and the policies and buffers of SB3 and this package. Anything else (a function stored by value, any other
class or callable) is refused with :class:`CodeInFileError` before any of it runs; ``trusted=True`` restores SB3's
unpickling for files one trusts.
"""

import base64
import binascii
import contextlib
import glob
import importlib
import io
import json
import math
import os
import pathlib
import pickle
import re
import socket
import stat
import tempfile
import types
import warnings
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import torch as th

# The largest ``data`` entry a model file may have, unpacked: a real one holds hyper-parameters, spaces and the last
# observations (well under a MiB); a zip that unpacks to more is refused before it is read.
MAX_DATA_BYTES = 64 * 2**20


class CodeInFileError(ValueError):
    """A model or policy file that needs code to be loaded (and ``trusted=True`` was not given): nothing of it ran."""


_BUILTINS = ("float", "int", "complex", "bool", "str", "bytes", "bytearray", "list", "tuple", "dict", "set", "frozenset")
_EXACT = {
    *(("builtins", name) for name in (*_BUILTINS, "slice", "range")),
    *(("__builtin__", name) for name in _BUILTINS),
    ("collections", "deque"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    *((module, name) for module in ("numpy._core.multiarray", "numpy.core.multiarray") for name in ("_reconstruct", "scalar")),
    *((module, "_frombuffer") for module in ("numpy._core.numeric", "numpy.core.numeric")),
    *(("numpy.random._pickle", name) for name in ("__generator_ctor", "__bit_generator_ctor", "__randomstate_ctor")),
    *(("stable_baselines3.common.utils", name) for name in ("ConstantSchedule", "FloatSchedule", "LinearSchedule")),
    ("rl_zoo3.utils", "SimpleLinearSchedule"),
    ("stable_baselines3.common.running_mean_std", "RunningMeanStd"),
    ("stable_baselines3.common.vec_env.vec_normalize", "VecNormalize"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
}
# Modules whose classes are allowed when they are of one of these kinds (names resolved when first met).
_CLASS_KINDS: dict[str, tuple[tuple[str, str], ...]] = {
    "gymnasium.spaces.": (("gymnasium.spaces", "Space"),),
    "numpy.random.": tuple(("numpy.random", kind) for kind in ("BitGenerator", "Generator", "RandomState", "SeedSequence")),
    "torch.nn.modules.": (("torch.nn", "Module"),),
    "torch.optim.": (("torch.optim", "Optimizer"),),
    "stable_baselines3.common.torch_layers": (("stable_baselines3.common.torch_layers", "BaseFeaturesExtractor"),),
    "stable_baselines3.common.policies": (("stable_baselines3.common.policies", "BasePolicy"),),
    "stable_baselines3.common.buffers": (("stable_baselines3.common.buffers", "RolloutBuffer"),),
    "sb3_reinforce.": (
        ("stable_baselines3.common.policies", "BasePolicy"),
        ("stable_baselines3.common.buffers", "RolloutBuffer"),
    ),
}
# getattr(object, name) pairs that SB3's files use (a policy file's lr_schedule is BasePolicy._dummy_schedule).
_ATTRIBUTES = {("stable_baselines3.common.policies.BasePolicy", "_dummy_schedule")}


def _resolve(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


def is_allowed(module: str, name: str) -> bool:
    """Whether :class:`RestrictedUnpickler` builds the global ``module.name`` (see the module's docstring)."""
    if (module, name) in _EXACT:
        return True
    if module.startswith("numpy.random.") and name.startswith("__pyx_unpickle_"):  # numpy's own generators' state
        return True
    for prefix, kinds in _CLASS_KINDS.items():
        if module == prefix or (prefix.endswith(".") and module.startswith(prefix)):
            try:
                found = _resolve(module, name)
            except (ImportError, AttributeError):
                return False
            return isinstance(found, type) and issubclass(found, tuple(_resolve(*kind) for kind in kinds))
    return False


def _restricted_getattr(obj: Any, name: str) -> Any:
    where = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"
    if (where, name) not in _ATTRIBUTES:
        raise pickle.UnpicklingError(f"getattr({where}, {name!r}) is not allowed")
    return getattr(obj, name)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only the globals :func:`is_allowed` lists; any other raises before it is called."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("builtins", "getattr"), ("__builtin__", "getattr")):
            return _restricted_getattr
        if not is_allowed(module, name):
            raise pickle.UnpicklingError(f"needs {module}.{name}")
        return super().find_class(module, name)


# For torch.load(pickle_module=...): a policy file read with the restricted unpickler.
restricted_pickle = types.SimpleNamespace(Unpickler=RestrictedUnpickler, load=pickle.load, __name__="restricted_pickle")


def code_error(path: Any, what: str) -> CodeInFileError:
    """The error for a file that needs code to be loaded: ``what`` needs which global, and the two ways on."""
    return CodeInFileError(
        f"{path}: {what}, which is code; nothing of it ran. Loading runs no code from a file unless told to: if you trust "
        "the file (you made it), load it with trusted=True. To only predict with a model whose schedules are code, "
        "replace them instead: custom_objects={'learning_rate': 0.0, 'lr_schedule': lambda _: 0.0}."
    )


def refused_global(error: Exception) -> str | None:
    """The global a refusal names: ours (``needs module.name``) or torch's (``Unsupported global: GLOBAL module.name``)."""
    match = re.search(r"^needs (\S+)$|GLOBAL (\S+)|(getattr\(.*\)) is not allowed", str(error), re.MULTILINE)
    return None if match is None else next(group for group in match.groups() if group)


@contextlib.contextmanager
def reading_without_code(path: Any, what: str, unreadable: str) -> Iterator[None]:
    """
    The errors of reading a file with :class:`RestrictedUnpickler` (directly or through ``torch.load``): a global it
    refused is a :class:`CodeInFileError` (``what`` needs it), anything it cannot read a ``ValueError`` saying
    ``unreadable``.
    """
    try:
        yield
    except pickle.UnpicklingError as error:
        refused = refused_global(error)
        if refused is not None:
            raise code_error(path, f"{what} needs {refused}") from error
        raise ValueError(f"{unreadable} ({error})") from error
    except (binascii.Error, EOFError, TypeError, ValueError, AttributeError, IndexError, KeyError) as error:
        raise ValueError(f"{unreadable} ({error})") from error


def safe_data_objects(path: Any, data: dict[str, Any], replaced: dict[str, Any]) -> dict[str, Any]:
    """
    The objects that a model file's ``data`` entry stores as pickles, read with :class:`RestrictedUnpickler` (those
    ``replaced`` by custom objects are not read): to be given to SB3's load as ``custom_objects``, so that it
    unpickles nothing itself.

    :raises CodeInFileError: for an entry that needs code to be built, naming it (nothing of it ran).
    :raises ValueError: for an entry that cannot be read (damaged).
    """
    objects = {}
    for key, value in data.items():
        if key in replaced or not (isinstance(value, dict) and ":serialized:" in value):
            continue
        with reading_without_code(
            path, f"its data entry {key!r}", f"{path} is damaged: its data entry {key!r} cannot be read"
        ):
            objects[key] = RestrictedUnpickler(io.BytesIO(base64.b64decode(value[":serialized:"]))).load()
    return objects


def check_save_file(path: str | pathlib.Path | io.BufferedIOBase) -> dict[str, Any]:
    """
    Look at a save file's structure (its members and its ``data`` entry, not the weights) and raise one clear error
    if it cannot be a REINFORCE save; return the ``data`` entry as JSON (its pickled objects not read).
    """
    source: pathlib.Path | io.BufferedIOBase
    if isinstance(path, (str, pathlib.Path)):
        source = pathlib.Path(path)
        if not source.exists() and pathlib.Path(f"{source}.zip").exists():  # as SB3's load: the suffix may be left out
            source = pathlib.Path(f"{source}.zip")
        if not source.exists():
            raise FileNotFoundError(f"No saved model at {path} (nor at {path}.zip)")
        if source.is_dir():
            raise ValueError(f"{path} is a directory, not a model saved with REINFORCE.save() (a .zip file)")
    else:
        source = path
    try:
        with zipfile.ZipFile(source) as archive:
            members = set(archive.namelist())
            if "data" in members and archive.getinfo("data").file_size > MAX_DATA_BYTES:
                raise ValueError(
                    f"{path} is refused: its 'data' entry unpacks to {archive.getinfo('data').file_size / 2**20:.0f} MiB, "
                    f"more than a model's ever needs (at most {MAX_DATA_BYTES // 2**20} MiB are read)"
                )
            damaged = archive.testzip()  # every member read once against its checksum (weights are a few MB)
            if damaged is not None:
                raise ValueError(f"{path} is damaged: its member {damaged!r} does not match its checksum (CRC)")
            raw_data = archive.read("data").decode() if "data" in members else None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not a model saved with save() (a zip file): truncated or another format? ({error})"
        ) from error
    finally:
        if isinstance(source, io.BufferedIOBase):
            source.seek(0)
    if raw_data is None:
        raise ValueError(
            f"{path} is not a complete Stable-Baselines3 save: it has no 'data' entry (truncated, or not written by save())"
        )
    try:
        data = json.loads(raw_data)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not a readable Stable-Baselines3 save: its 'data' entry is corrupted ({error})"
        ) from error
    missing = [key for key in ("baseline", "incomplete_episodes") if key not in data]
    if missing:
        raise ValueError(
            f"{path} is not a REINFORCE save: its data has no {', '.join(missing)}. Was it saved by another "
            "algorithm (A2C, PPO, ...)? Load it with that algorithm's class."
        )
    missing = [name for name in ("policy.pth", "policy.optimizer.pth") if name not in members]
    if missing:
        raise ValueError(f"{path} is an incomplete REINFORCE save: it has no {', '.join(missing)}")
    return data


def load_vec_normalize(path: str | os.PathLike, venv: Any, trusted: bool = False) -> Any:
    """
    SB3's ``VecNormalize.load(path, venv)`` (the statistics ``vecnormalize.pkl`` holds, wrapped around ``venv``),
    without running code from the file: it is read with :class:`RestrictedUnpickler`, and a file that needs anything
    else raises :class:`CodeInFileError` before it runs. ``trusted=True`` is SB3's own ``VecNormalize.load``.
    """
    from stable_baselines3.common.vec_env import VecNormalize

    if trusted:
        return VecNormalize.load(str(path), venv)
    with open(path, "rb") as file, reading_without_code(path, "it", f"{path} is not a readable VecNormalize file"):
        vec_normalize = RestrictedUnpickler(file).load()
    if not isinstance(vec_normalize, VecNormalize):
        raise ValueError(f"{path} is not a VecNormalize file (it holds a {type(vec_normalize).__name__})")
    vec_normalize.set_venv(venv)
    return vec_normalize


def check_loaded_state(path: Any, policy: Any, return_moments: tuple[float, float] | None) -> None:
    """Raise a ``ValueError`` naming the part of the file if a loaded model's weights or running moments are not finite."""
    for name, tensor in policy.state_dict().items():
        if tensor.is_floating_point() and not bool(th.isfinite(tensor).all()):
            raise ValueError(f"{path} holds non-finite network weights (policy.pth: {name}); they cannot be trained or used")
    if return_moments is not None and not all(math.isfinite(float(value)) for value in return_moments):
        raise ValueError(f"{path} holds non-finite running return moments (data: _return_moments {return_moments})")


@contextlib.contextmanager
def load_errors(path: str | pathlib.Path | io.BufferedIOBase, spaces: str = "") -> Iterator[None]:
    """
    Turn the errors of torch reading damaged weights, weights that need code or weights that do not fit the network
    the file's data describes (``spaces`` says which) into one ``ValueError`` naming the file (others pass).
    """
    try:
        yield
    except pickle.UnpicklingError as error:
        if refused_global(error):  # torch read the weights without running code, and refused a global they name: code
            raise code_error(path, f"its weights need {refused_global(error)}") from error
        raise ValueError(f"{path} holds damaged network weights and cannot be loaded: {error}") from error
    except (EOFError, zipfile.BadZipFile, NotImplementedError) as error:
        # torch.load of a damaged weights file (or a member whose CRC does not match)
        raise ValueError(f"{path} holds damaged network weights and cannot be loaded: {error}") from error
    except RuntimeError as error:
        if "size mismatch" in str(error) or "Missing key(s)" in str(error) or "Unexpected key(s)" in str(error):
            raise ValueError(
                f"{path} holds weights that do not fit the network its data describes{spaces}: {error}"
            ) from error
        if "PytorchStreamReader" not in str(error):  # not about the file (e.g. the device)
            raise
        raise ValueError(f"{path} holds damaged network weights and cannot be loaded: {error}") from error


def save_target(path: str | os.PathLike) -> pathlib.Path:
    """Where SB3's ``save`` writes ``path``: ``.zip`` added to a path without a suffix, ``PATH_2`` for a folder."""
    target = pathlib.Path(path)
    if target.suffix == "":
        target = pathlib.Path(f"{target}.zip")
    if target.is_dir():  # as SB3's save_to_zip_file
        warnings.warn(f"Path '{target}' is a folder. Will save instead to {target}_2", stacklevel=3)
        target = pathlib.Path(f"{target}_2")
    return target


@contextlib.contextmanager
def atomic_write(target: pathlib.Path) -> Iterator[io.BufferedWriter]:
    """
    A binary file to write ``target``'s new content into: a temporary file beside it, flushed to disk and renamed
    onto ``target`` when the block ends, removed if the block raises. A process killed in between leaves ``target``
    as it was, and a temporary file that the next save to ``target`` removes. What the user set on ``target`` stays:
    a symlink keeps pointing to the file, which is replaced; the new file gets the old one's permissions (a new file
    those ``open`` would give it). While it runs, the folder needs room for the old file and the new one.
    """
    target = pathlib.Path(os.path.realpath(target))  # a symlink: replace the file it points to, not the link
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_temporaries(target)
    prefix = f".{target.name}.{socket.gethostname()}.{os.getpid()}."
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, _mode(target))
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(target.parent)


def _mode(target: pathlib.Path) -> int:
    """The permissions of ``target``, or for a new file what ``open`` would give (mkstemp's are 0o600)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _remove_dead_temporaries(target: pathlib.Path) -> None:
    """
    Remove the temporary files of saves to ``target`` whose process died (killed during a save): those this host's
    processes made (``.NAME.HOST.PID.*.tmp``) whose PID no longer runs. Another live process's save keeps its own.
    """
    host, prefix = socket.gethostname(), f".{target.name}."
    for temporary in target.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        parts = temporary.name[len(prefix) : -len(".tmp")].rsplit(".", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit() or _is_running(int(parts[1])):
            continue
        with contextlib.suppress(OSError):
            temporary.unlink()


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _fsync_directory(directory: pathlib.Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def save_atomically(save: Callable[..., None], path: str | os.PathLike | io.BufferedIOBase, *args: Any) -> None:
    """
    Call SB3's ``save(path, *args)`` so that a crash leaves the previous save intact: for a path, ``save`` writes into
    :func:`atomic_write`'s temporary file, renamed onto the target when it is complete. A file-like object is written
    to directly.
    """
    if not isinstance(path, (str, os.PathLike)):
        save(path, *args)
        return
    with atomic_write(save_target(path)) as file:
        save(file, *args)
