"""
The ``sb3-reinforce-zoo`` command (also ``python -m sb3_reinforce.zoo``): rl_zoo3's commands with REINFORCE
registered (:func:`sb3_reinforce.zoo.register`).

rl_zoo3's own parser reads the command line. For ``train``, REINFORCE's additions read it first (``argparse``'s
``parse_known_args``, :func:`_read_options`) and hand rl_zoo3 the arguments it accepts: the packaged ``reinforce.yml``
as ``-conf`` when ``--algo reinforce`` comes without one, a clear error for a hyper-parameter file that is not valid
YAML, the ``--heartbeat-interval`` / ``--grace-period`` options of a search on an RDB storage
(:mod:`sb3_reinforce.zoo.storage`) taken out, a ``--storage`` password moved out of what rl_zoo3 records, and
hyper-parameters REINFORCE refuses reported in one line (the traceback with ``--verbose 2``), the run folder rl_zoo3 had
created for the run removed.
"""

import argparse
import importlib
import os
import runpy
import shutil
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

from sb3_reinforce.zoo import ALGO_NAME, default_config_path, register

if TYPE_CHECKING:
    from sb3_reinforce.zoo.storage import Heartbeat

USAGE = """usage: sb3-reinforce-zoo COMMAND [rl_zoo3 arguments]

Commands (rl_zoo3's, with REINFORCE registered as --algo reinforce):
  train            train an agent (-optimize to search hyper-parameters)
  enjoy            run a trained agent
  record_video     record a video of a trained agent
  record_training  record videos of the checkpoints of a training
  plot_train       plot training curves
  plot_from_file   plot results saved by all_plots
  all_plots        plot evaluations of several algorithms
  best             write the best trial of a search as a reinforce.yml entry (sb3-reinforce-zoo best -h)

train -optimize with an RDB --storage (postgresql://..., sqlite:///...) turns on Optuna's heartbeat, so that the
trial of a worker that died is failed and run again by another worker:
  --heartbeat-interval SECONDS   between two heartbeats of a running trial (default {interval}; 0: no heartbeat)
  --grace-period SECONDS         silence after which a trial is failed and retried (default {grace})

The hyper-parameters of REINFORCE are read from the packaged reinforce.yml unless -conf/--conf-file is given:
{config}
"""


# command -> (module, function); ``None`` runs the module as a script. Imported only when used: the plotting
# commands need rl_zoo3's plotting dependencies (seaborn, ...), which training does not.
COMMANDS: dict[str, tuple[str, str | None]] = {
    "train": ("rl_zoo3.train", "train"),
    "enjoy": ("rl_zoo3.enjoy", "enjoy"),
    "record_video": ("rl_zoo3.record_video", None),
    "record_training": ("rl_zoo3.record_training", None),
    "plot_train": ("rl_zoo3.plots.plot_train", "plot_train"),
    "plot_from_file": ("rl_zoo3.plots.plot_from_file", "plot_from_file"),
    "all_plots": ("rl_zoo3.plots.all_plots", "all_plots"),
}


def _record_video_here(call: Any) -> Any:
    """
    ``subprocess.call`` for rl_zoo3's ``record_training``, which records each checkpoint by running
    ``python -m rl_zoo3.record_video`` in a subprocess: there REINFORCE is not registered (rl_zoo3 has no plugin entry
    point), and rl_zoo3 offers no option for the command it runs, so that one command is sent to this entry point,
    with this interpreter, instead; any other call is left as it is.
    """

    def redirected(args: Any, *more: Any, **kwargs: Any) -> Any:
        if isinstance(args, list) and args[:3] == ["python", "-m", "rl_zoo3.record_video"]:
            args = [sys.executable, "-m", "sb3_reinforce.zoo", "record_video", *args[3:]]
        return call(args, *more, **kwargs)

    return redirected


def _run_command(command: str) -> None:
    module_name, function = COMMANDS[command]
    try:
        if command == "record_training":
            import subprocess

            with mock.patch.object(subprocess, "call", _record_video_here(subprocess.call)):
                runpy.run_module(module_name, run_name="__main__", alter_sys=True)
        elif function is None:
            runpy.run_module(module_name, run_name="__main__", alter_sys=True)
        else:
            getattr(importlib.import_module(module_name), function)()
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith("sb3_reinforce"):
            raise SystemExit(
                f"{command} needs {error.name}, which is not installed: pip install 'sb3-reinforce[zoo,extra]' "
                "(the zoo, and the plotting, progress bar and TensorBoard packages)"
            ) from error
        raise


def _check_hyperparameter_file(parser: argparse.ArgumentParser, conf: str | None) -> None:
    """A yml hyper-parameter file must be a mapping of env ids (rl_zoo3 would fail deep inside its start-up)."""
    if conf is None or not conf.endswith((".yml", ".yaml")) or not os.path.isfile(conf):
        return
    import yaml

    try:
        with open(conf) as file:
            content = yaml.safe_load(file)
    except yaml.YAMLError as error:
        parser.exit(1, f"Malformed hyper-parameter file {conf}: {error}\n")
    if not isinstance(content, dict):
        parser.exit(1, f"Malformed hyper-parameter file {conf}: expected a mapping of env ids to hyper-parameters\n")


def _heartbeat(parser: argparse.ArgumentParser, args: argparse.Namespace) -> "Heartbeat | None":
    """
    The heartbeat of a search on an RDB storage from ``--heartbeat-interval`` / ``--grace-period`` (by default
    :data:`~sb3_reinforce.zoo.storage.DEFAULT_HEARTBEAT_INTERVAL` and ``DEFAULT_GRACE_PERIOD``; interval 0: none).
    Given without a search, or with a JournalFile storage, they are a usage error.
    """
    from sb3_reinforce.zoo import storage as storages

    interval, grace_period = args.heartbeat_interval, args.grace_period
    given = interval is not None or grace_period is not None
    search = args.optimize_hyperparameters and args.storage is not None
    if given and not search:
        parser.error("--heartbeat-interval / --grace-period apply to a search: train -optimize --storage URL")
    if search and storages.is_journal(args.storage):
        if given:
            parser.error(
                f"--heartbeat-interval / --grace-period need an RDB storage (postgresql://..., sqlite:///...): "
                f"Optuna's JournalFile storage {args.storage} has no heartbeat"
            )
        print(
            f"note: Optuna's JournalFile storage ({args.storage}) has no heartbeat: the trial of a worker that dies stays "
            "RUNNING; use an RDB storage (PostgreSQL) for a search that survives dead workers",
            file=sys.stderr,
        )
    if interval == 0:
        if grace_period is not None:
            parser.error("--grace-period needs a heartbeat: --heartbeat-interval > 0")
        return None
    if interval is None:
        interval = storages.DEFAULT_HEARTBEAT_INTERVAL
        grace_period = storages.DEFAULT_GRACE_PERIOD if grace_period is None else grace_period
    elif grace_period is None:
        grace_period = 3 * interval
    try:
        return storages.Heartbeat(interval=interval, grace_period=grace_period)
    except ValueError as error:
        parser.error(f"--heartbeat-interval / --grace-period: {error}")


def _run_folder(args: argparse.Namespace) -> Path | None:
    """
    The folder in which rl_zoo3's ``train`` (not a search) will save this run: ``LOG/ALGO/ENV_N``, N one more than the
    latest run's (rl_zoo3's own rule, with its ``get_latest_run_id``); ``None`` with ``--uuid`` (a random suffix).
    """
    from huggingface_sb3 import EnvironmentName
    from rl_zoo3.utils import get_latest_run_id

    if args.optimize_hyperparameters or args.uuid:
        return None
    log_path, env_name = f"{args.log_folder}/{args.algo}/", EnvironmentName(args.env)
    return Path(log_path, f"{env_name}_{get_latest_run_id(log_path, env_name) + 1}")


def _read_options(args: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """
    Read ``train``'s command line ahead of rl_zoo3: REINFORCE's own options (``--heartbeat-interval``,
    ``--grace-period``), which are taken out, and the rl_zoo3 options its additions need (the algorithm, env, log
    folder, ``-conf``, ``--uuid``, ``-optimize``, ``--storage``, ``--verbose``, with rl_zoo3's defaults), which are left
    for rl_zoo3 to read. ``-conf`` with the packaged ``reinforce.yml`` is added for ``--algo reinforce`` without one.

    :return: The options read (``heartbeat``: :func:`_heartbeat`'s), and the arguments to hand to rl_zoo3's ``train``.
    """
    ours = argparse.ArgumentParser(prog="sb3-reinforce-zoo train", add_help=False, allow_abbrev=False)
    ours.add_argument("--heartbeat-interval", type=int, help="seconds between two heartbeats of a trial")
    ours.add_argument("--grace-period", type=int, help="silence after which a trial is failed and retried")
    options, rest = ours.parse_known_args(args)
    # rl_zoo3's option strings and defaults (rl_zoo3.train.train), for the options the additions need
    zoo = argparse.ArgumentParser(prog="sb3-reinforce-zoo train", add_help=False)
    zoo.add_argument("--algo", default="ppo")
    zoo.add_argument("--env", default="CartPole-v1")
    zoo.add_argument("-f", "--log-folder", default="logs")
    zoo.add_argument("-conf", "--conf-file", default=None)
    zoo.add_argument("-uuid", "--uuid", action="store_true")
    zoo.add_argument("-optimize", "--optimize-hyperparameters", action="store_true")
    zoo.add_argument("--storage", default=None)
    zoo.add_argument("--verbose", type=int, default=1)
    zoo.parse_known_args(rest, namespace=options)
    if options.algo == ALGO_NAME and options.conf_file is None:
        options.conf_file = default_config_path()
        rest = [*rest, "-conf", options.conf_file]
    _check_hyperparameter_file(ours, options.conf_file)
    options.heartbeat = _heartbeat(ours, options)
    return options, rest


def _train(args: list[str]) -> None:
    """rl_zoo3's ``train``, with REINFORCE's additions (see the module docstring)."""
    from rl_zoo3 import train as zoo_train

    from sb3_reinforce.zoo.storage import rdb_patches

    options, rest = _read_options(args)
    folder = _run_folder(options)  # computed as rl_zoo3 will, before it creates it
    sys.argv = ["sb3-reinforce-zoo train", *rest]
    try:
        with rdb_patches(options.heartbeat):
            zoo_train.train()
    except ConnectionError as error:  # the storage's server cannot be reached (storage.rdb_storage)
        raise SystemExit(f"sb3-reinforce-zoo train: {error}") from None
    except (ValueError, TypeError) as error:  # REINFORCE's checks of its hyper-parameters (or load's)
        trained = any(frame.name == "learn" for frame in traceback.extract_tb(error.__traceback__))
        if folder is not None and folder.is_dir() and not trained:
            shutil.rmtree(folder)  # nothing trained: the next enjoy must not take it for the latest run
        if options.verbose >= 2:
            raise
        raise SystemExit(f"sb3-reinforce-zoo train: {error} (--verbose 2 shows where)") from None
    except SystemExit as exit_:
        if exit_.code == 0 and any(arg in ("-h", "--help") for arg in rest):
            print("\nREINFORCE's additions (sb3-reinforce-zoo --help): --heartbeat-interval, --grace-period")
        raise


def _without_password(args: list[str]) -> list[str]:
    """
    ``args`` with a ``--storage`` URL's password moved to ``PGPASSWORD``
    (:func:`~sb3_reinforce.zoo.storage.password_to_environment`), and ``sys.orig_argv``, which rl_zoo3 records as the
    study's command, likewise.
    """
    from sb3_reinforce.zoo.storage import password_to_environment

    for index, arg in enumerate(args):
        if arg == "--storage" and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("--storage="):
            value = arg.partition("=")[2]
        else:
            continue
        try:
            without = password_to_environment(value)
        except ValueError as error:
            print(f"sb3-reinforce-zoo train: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        args = [item.replace(value, without) for item in args]
        sys.orig_argv = [item.replace(value, without) for item in sys.orig_argv]
        break
    return args


def main(argv: list[str] | None = None) -> None:
    """
    Entry point of ``sb3-reinforce-zoo`` and ``python -m sb3_reinforce.zoo``.

    :param argv: The arguments (default: ``sys.argv[1:]``): a command, then rl_zoo3's arguments for it.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        try:
            from sb3_reinforce.zoo.storage import DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_INTERVAL
        except ImportError as error:
            raise SystemExit(f"The RL Zoo is not installed ({error}): pip install 'sb3-reinforce[zoo]'") from None

        print(USAGE.format(config=default_config_path(), interval=DEFAULT_HEARTBEAT_INTERVAL, grace=DEFAULT_GRACE_PERIOD))
        return
    command, args = argv[0], argv[1:]
    if command not in (*COMMANDS, "best"):
        # A usage error: exit status 2, as argparse gives.
        print(
            f"sb3-reinforce-zoo: unknown command {command!r}; choose one of: {', '.join([*COMMANDS, 'best'])}", file=sys.stderr
        )
        raise SystemExit(2)
    try:
        register()
    except ImportError as error:
        raise SystemExit(f"The RL Zoo is not installed ({error}): pip install 'sb3-reinforce[zoo]'") from error
    if command == "best":
        from sb3_reinforce.zoo import best

        best.main(args, default_config_path())
        return
    if command == "train":
        _train(_without_password(args))
        return
    sys.argv = [f"sb3-reinforce-zoo {command}", *args]
    _run_command(command)
