"""
Save files: what ``REINFORCE.load`` checks before SB3 reads a file, the errors it translates while SB3 reads it, and
the atomic write behind ``REINFORCE.save`` (a crash during a save never destroys the previous save).
"""

import contextlib
import glob
import io
import json
import os
import pathlib
import pickle
import socket
import stat
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from typing import Any


def check_save_file(path: str | pathlib.Path | io.BufferedIOBase) -> None:
    """
    Look at a save file's structure (its members and its ``data`` entry, not the weights) and raise one clear error
    if it cannot be a REINFORCE save.
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
            raw_data = archive.read("data").decode() if "data" in members else None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
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


@contextlib.contextmanager
def load_errors(path: str | pathlib.Path | io.BufferedIOBase) -> Iterator[None]:
    """Turn the errors of torch reading damaged weights into one ``ValueError`` naming the file (others pass)."""
    try:
        yield
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile) as error:
        # torch.load of a damaged weights file (or a member whose CRC does not match)
        raise ValueError(f"{path} holds damaged network weights and cannot be loaded: {error}") from error
    except RuntimeError as error:
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
