"""
``sb3-reinforce-zoo best``: the best trial of a REINFORCE search as a ready ``reinforce.yml`` entry.

The entry is the one the search started from (the env's entry of ``-conf``, by default the packaged
``reinforce.yml``: ``n_envs``, ``n_timesteps``, ``policy``, ``normalize``, ...) with the searched hyper-parameters
replaced by the best trial's, turned into constructor arguments by the same converter the search used. It is printed,
and with ``--output FILE`` written into FILE with a round-trip YAML library (ruamel.yaml): the env's entry replaced
(other entries and comments kept) or added.
"""

import argparse
import io
import os
import shlex
import sys
from typing import Any

import optuna
import yaml
from torch import nn

from sb3_reinforce.zoo import ALGO_NAME
from sb3_reinforce.zoo.hyperparams_opt import convert_reinforce_params
from sb3_reinforce.zoo.storage import display_url, open_storage

FIRST_KEYS = ("n_envs", "n_timesteps", "policy")


def python_text(value: Any) -> str:
    """``value`` as Python text the zoo can evaluate (``nn`` in scope): dicts as ``dict(...)``, modules as ``nn.Name``."""
    if isinstance(value, dict) and all(isinstance(key, str) and key.isidentifier() for key in value):
        return f"dict({', '.join(f'{key}={python_text(item)}' for key, item in value.items())})"
    if isinstance(value, type) and issubclass(value, nn.Module):
        name = value.__name__
        if getattr(nn, name, None) is value:
            return f"nn.{name}"
    text = repr(value)
    if isinstance(value, type) or text.startswith("<"):
        raise ValueError(f"cannot write {value!r} as text the zoo can read back")
    return text


def recorded_argument(study: optuna.Study, name: str) -> str | None:
    """The value of option ``name`` (``--env``, ``--algo``) in the command rl_zoo3 recorded when it created the study."""
    command = study.user_attrs.get("command")
    if not isinstance(command, str):
        return None
    args = shlex.split(command)
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def env_of_study(study: optuna.Study) -> str | None:
    """The ``--env`` of the command rl_zoo3 recorded when it created the study (user attribute ``command``)."""
    return recorded_argument(study, "--env")


def best_entry(study: optuna.Study, base: dict[str, Any], n_timesteps: int | None = None) -> dict[str, Any]:
    """
    The yml entry of the best complete trial of ``study``.

    :param study: A study of ``sb3-reinforce-zoo train --algo reinforce -optimize``.
    :param base: The env's entry the search started from (its untuned keys are kept).
    :param n_timesteps: Training budget of the entry (default: the base entry's).
    :return: The entry, ``n_envs``, ``n_timesteps`` and ``policy`` first, then the rest sorted.
    :raises ValueError: When the study has no complete trial or is not a REINFORCE search.
    """
    algo = recorded_argument(study, "--algo")
    if algo is not None and algo != ALGO_NAME:
        raise ValueError(
            f"study {study.study_name!r} is a search of --algo {algo}, not of REINFORCE: its best trial is no "
            "reinforce.yml entry (best writes entries from sb3-reinforce-zoo train --algo reinforce -optimize studies)"
        )
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        raise ValueError(f"study {study.study_name!r} has no complete trial yet")
    trial = study.best_trial
    try:
        tuned = convert_reinforce_params(trial.params)
    except KeyError as error:
        raise ValueError(
            f"study {study.study_name!r} is not a REINFORCE search: its trials have the parameters {sorted(trial.params)}"
        ) from error
    tuned["policy_kwargs"] = python_text(tuned["policy_kwargs"])
    entry = {**base, **tuned}
    if n_timesteps is not None:
        entry["n_timesteps"] = n_timesteps
    if isinstance(entry.get("n_timesteps"), float) and entry["n_timesteps"].is_integer():
        entry["n_timesteps"] = int(entry["n_timesteps"])  # 1000000, not 1000000.0
    for key in FIRST_KEYS:
        if key not in entry:
            raise ValueError(f"the base entry has no {key!r}: give -conf with the entry the search used")
    return {**{key: entry[key] for key in FIRST_KEYS}, **{key: entry[key] for key in sorted(entry) if key not in FIRST_KEYS}}


def base_mismatches(study: optuna.Study, base: dict[str, Any], tuned_keys: set[str]) -> list[str]:
    """
    Where ``base`` differs from the hyper-parameters the search ran with, as rl_zoo3 recorded them (one ``str(value)``
    user attribute per constructor argument of the yml entry and ``--hyperparams``, not the searched ones).
    """
    return [
        f"{key}: the search used {recorded}, the base entry has {base.get(key)!r}"
        for key, recorded in sorted(study.user_attrs.items())
        if key != "command" and key not in tuned_keys and str(base.get(key)) != recorded
    ]


def _yaml() -> Any:
    """A round-trip YAML (ruamel.yaml: comments, order and quoting kept) whose floats PyYAML, which rl_zoo3 uses, reads
    back as the same floats (``1e5`` is a string to PyYAML, ruamel drops a ``!!float`` tag and may round the last digit:
    such a float is written as Python's ``repr``, with a dot in its mantissa)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.scalarfloat import ScalarFloat

    round_trip = YAML()
    round_trip.preserve_quotes = True
    round_trip.width = 4096
    round_trip.indent(mapping=2, sequence=4, offset=2)
    default = round_trip.representer.represent_scalar_float

    def represent_float(representer: Any, value: float) -> Any:
        node = default(value) if isinstance(value, ScalarFloat) else representer.represent_float(value)
        read_back = yaml.safe_load(node.value)
        # ruamel rebuilds a loaded float's text from its value: at 16 or 17 significant digits (a float written as
        # Python's repr, as this module writes them) it may end in another last digit than the file had, for the same
        # float (...636e-08 -> ...635e-08, ...687e-05 -> ...686e-05).
        digits = len(node.value.split("e")[0].replace("-", "").replace(".", "").lstrip("0"))
        if not isinstance(read_back, float) or read_back != float(value) or digits >= 16:
            mantissa, e, exponent = repr(float(value)).partition("e")  # exact; PyYAML needs a dot: 1e-05 -> 1.0e-05
            text = mantissa + (".0" if e and "." not in mantissa else "") + e + exponent
            node = representer.represent_scalar("tag:yaml.org,2002:float", text)
        return node

    round_trip.representer.add_representer(ScalarFloat, represent_float)
    round_trip.representer.add_representer(float, represent_float)
    return round_trip


def put_entry(text: str, env: str, entry: dict[str, Any], comment: str) -> str:
    """
    ``text`` (a zoo yml) with the entry of ``env`` replaced by ``entry`` (``comment`` as its first line), or added at
    the end; other entries and comments are kept. When the replaced entry is a YAML anchor (``HalfCheetah-v4:
    &halfcheetah``), the new entry keeps the anchor and the entries that alias it (``HalfCheetah-v5: *halfcheetah``)
    stay aliases of it, so they get the new values too.
    """
    from ruamel.yaml.comments import CommentedMap

    round_trip = _yaml()
    data = round_trip.load(text) or CommentedMap()
    new = CommentedMap(entry)
    old = data.get(env)
    if isinstance(old, CommentedMap) and len(old) and list(old)[-1] in old.ca.items:
        # ruamel keeps the comments above the next entry after this entry's last value: they stay where they were.
        new.ca.items[list(new)[-1]] = old.ca.items[list(old)[-1]]
    if isinstance(old, CommentedMap) and old.anchor.value is not None:
        new.yaml_set_anchor(old.anchor.value, always_dump=True)
    added = env not in data
    own_comment = data.ca.items.pop(env, None)  # the old entry's own comment (and what stands before its key)
    data[env] = new
    for key in [key for key, value in data.items() if value is old]:  # aliases of the replaced entry
        data[key] = new
        alias_comment = data.ca.items.get(key)
        if own_comment and alias_comment and alias_comment[3] == own_comment[3]:
            data.ca.items.pop(key)  # ruamel files the anchored entry's comment under its aliases too
    data.yaml_set_comment_before_after_key(
        env, before="\n" if added and len(data) > 1 else None, after=comment, after_indent=2
    )
    if own_comment and own_comment[1]:  # the blank line before the key, when ruamel keeps it there (after an alias)
        data.ca.items[env][1] = own_comment[1]
    output = io.StringIO()
    round_trip.dump(data, output)
    return output.getvalue()


def main(argv: list[str], default_conf: str) -> None:
    """
    ``sb3-reinforce-zoo best``: print the best trial's entry, and with ``--output`` write it into a yml file.

    :param argv: The command's arguments.
    :param default_conf: The yml whose entry is the base when ``-conf`` is not given (the packaged one).
    """
    parser = argparse.ArgumentParser(
        prog="sb3-reinforce-zoo best",
        description="Turn the best trial of a REINFORCE search into a reinforce.yml entry.",
    )
    parser.add_argument("--storage", required=True, help="the search's --storage (RDB URL or JournalFile .log)")
    parser.add_argument("--study-name", required=True)
    parser.add_argument("--env", help="env id of the entry (default: the --env of the command that created the study)")
    parser.add_argument("-conf", "--conf-file", help="yml with the entry the search used (default: the packaged one)")
    parser.add_argument("-n", "--n-timesteps", type=int, help="training budget of the entry (default: the base entry's)")
    parser.add_argument("-o", "--output", help="yml file to write the entry into (replaced if present, else added)")
    args = parser.parse_args(argv)

    if args.output and not os.path.isdir(os.path.dirname(args.output) or "."):
        raise SystemExit(f"-o {args.output}: the folder {os.path.dirname(args.output)} does not exist")
    try:
        study = optuna.load_study(study_name=args.study_name, storage=open_storage(args.storage))
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from error
    except KeyError as error:
        raise SystemExit(f"No study {args.study_name!r} in {display_url(args.storage)}") from error
    except ImportError as error:  # Optuna's "Failed to import DB access module" for a database client not installed
        raise SystemExit(
            f"--storage {display_url(args.storage)} needs a database client that is not installed ({error}): "
            "pip install 'sb3-reinforce[distributed]' (PostgreSQL)"
        ) from error
    env = args.env or env_of_study(study)
    if env is None:
        raise SystemExit(f"Study {args.study_name!r} does not record its env: give --env")
    conf = args.conf_file or default_conf
    try:
        with open(conf) as file:
            entries = yaml.safe_load(file) or {}
    except OSError as error:
        raise SystemExit(f"-conf {conf}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise SystemExit(f"-conf {conf} is not a YAML file: {error}") from error
    base = entries.get(env, entries.get("default"))
    if not isinstance(base, dict):
        raise SystemExit(f"{conf} has no entry for {env}: give -conf with the entry the search used")
    try:
        entry = best_entry(study, base, args.n_timesteps)
    except ValueError as error:
        raise SystemExit(str(error)) from error
    tuned_keys = set(convert_reinforce_params(study.best_trial.params))
    for mismatch in base_mismatches(study, base, tuned_keys):
        print(f"warning: {mismatch} (from {conf}; give -conf with the entry the search used)", file=sys.stderr)
    trial = study.best_trial
    n_complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    comment = (
        f"sb3-reinforce-zoo best: trial {trial.number} of study '{study.study_name}' "
        f"(best of {n_complete} complete trials, mean evaluation return {trial.value:.4g})"
    )
    block = put_entry("", env, entry, comment)
    print(block, end="")
    if args.output:
        try:
            with open(args.output) as file:
                text = file.read()
        except FileNotFoundError:
            text = ""
        try:
            old = yaml.safe_load(text) or {}
            new_text = put_entry(text, env, entry, comment)
            written = yaml.safe_load(new_text)
        except Exception as error:  # ruamel's and PyYAML's errors: the file is not YAML they can read
            raise SystemExit(f"Could not place the entry of {env} in {args.output} ({error}); nothing written") from error
        # What rl_zoo3 will read (PyYAML): every other entry as it was, the new one, and the aliases of the env's entry
        # (PyYAML gives an alias the anchored entry's own object) the same as the new one.
        aliases = {key for key, value in old.items() if key != env and value is old[env]} if env in old else set()
        others_kept = isinstance(written, dict) and all(
            written.get(key) == value for key, value in old.items() if key != env and key not in aliases
        )
        aliases_follow = isinstance(written, dict) and all(written.get(key) == written.get(env) for key in aliases)
        if not others_kept or not aliases_follow or written.get(env) != yaml.safe_load(block)[env]:
            raise SystemExit(f"Could not place the entry of {env} in {args.output}; nothing written")
        with open(args.output, "w") as file:
            file.write(new_text)
        print(f"# written to {args.output}")
