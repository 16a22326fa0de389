"""
Optuna storages for searches that several workers share, and what happens when one of them dies.

rl_zoo3 hands ``--storage`` to ``optuna.create_study`` as a string: a path ending in ``.log`` becomes a JournalFile
storage, anything else an RDB URL (``sqlite:///...``, ``postgresql://...``). A plain RDB URL has no heartbeat, so a
trial whose worker is killed stays ``RUNNING`` for ever. :func:`rdb_patches` is used by
``sb3-reinforce-zoo train -optimize``: while rl_zoo3 runs the search it turns an RDB URL into an
``RDBStorage`` with Optuna's heartbeat (each running trial records a heartbeat every ``heartbeat_interval`` seconds;
one silent for ``grace_period`` seconds is failed and queued again, with the same parameters, for a live worker), and
makes ``--max-total-trials`` wait for other workers' running trials instead of counting a dead worker's trial as
finished. Nothing of rl_zoo3 is copied; both are replaced only for the duration of the search.
"""

import contextlib
import os
import random
import time
import warnings
from collections.abc import Container, Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

DEFAULT_HEARTBEAT_INTERVAL = 60
DEFAULT_GRACE_PERIOD = 180
MAX_RETRY = 3
# Seconds a connection to a PostgreSQL server may take (libpq's connect_timeout): a server that is down or does not
# answer is reported after a few attempts, not after libpq's default of minutes.
CONNECT_TIMEOUT = 5
# Without a heartbeat, how long a storage call keeps retrying while the database cannot be reached.
RETRY_WITHOUT_HEARTBEAT = 60


def is_journal(storage: str) -> bool:
    """rl_zoo3's rule: a ``--storage`` ending in ``.log`` is an Optuna JournalFile, anything else an RDB URL."""
    return storage.endswith(".log")


def display_url(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: Optuna will say so
        return url


def password_to_environment(storage: str) -> str:
    """
    ``storage`` without its password, which moves to ``PGPASSWORD`` (where libpq, and so psycopg, reads it): rl_zoo3
    records the command line in the study (its ``command`` attribute) and pickles the study, storage URL included, in
    its reports, so a password in the URL would be written down. A JournalFile or a URL without a password is
    returned as it is.

    :raises ValueError: for a password in a URL of another database than PostgreSQL (it could not be moved).
    """
    if is_journal(storage):
        return storage
    try:
        import sqlalchemy

        url = sqlalchemy.engine.make_url(storage)
    except Exception:  # not a URL SQLAlchemy can parse: Optuna will say so
        return storage
    if url.password is None:
        return storage
    if not url.get_backend_name().startswith("postgresql"):
        raise ValueError(
            f"--storage {display_url(storage)}: a password in the URL would be recorded with the study; give a URL "
            "without it and let the database client read the password from its own configuration"
        )
    os.environ["PGPASSWORD"] = str(url.password)
    without = sqlalchemy.engine.URL.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)
    return without.render_as_string(hide_password=False)


def storage_file(storage: str) -> str | None:
    """The file a ``--storage`` value lives in (a JournalFile ``.log``, an SQLite database), ``None`` for a server."""
    if is_journal(storage):
        return storage
    if storage.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        database = make_url(storage).database
        return database if database and database != ":memory:" and not database.startswith("file:") else None
    return None


def open_storage(storage: str, create: bool = False) -> optuna.storages.BaseStorage | str:
    """
    What Optuna should get for rl_zoo3's ``--storage`` value when reading a study (no heartbeat needed).

    :param create: Whether a JournalFile or SQLite storage that does not exist yet may be created.
    :raises FileNotFoundError: for a JournalFile or SQLite storage whose file does not exist, unless ``create``
        (Optuna would create an empty one).
    """
    path = storage_file(storage)
    if not create and path is not None and not os.path.isfile(path):
        raise FileNotFoundError(f"The storage {storage} does not exist (no file {path})")
    if is_journal(storage):
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))  # type: ignore[attr-defined]
    return storage


@dataclass(frozen=True)
class Heartbeat:
    """
    Heartbeat settings of an RDB storage.

    :param interval: Seconds between two heartbeats of a running trial.
    :param grace_period: Seconds without a heartbeat after which a running trial is failed and retried.
    :param max_retry: How many times one trial's parameters are retried after their workers died.
    """

    interval: int = DEFAULT_HEARTBEAT_INTERVAL
    grace_period: int = DEFAULT_GRACE_PERIOD
    max_retry: int = MAX_RETRY

    def __post_init__(self) -> None:
        if not isinstance(self.interval, int) or self.interval <= 0:
            raise ValueError(f"heartbeat interval must be a positive number of seconds, got {self.interval!r}")
        if not isinstance(self.grace_period, int) or self.grace_period <= self.interval:
            raise ValueError(
                f"grace period must be a whole number of seconds longer than the heartbeat interval ({self.interval}), "
                f"got {self.grace_period!r}: a live worker's trial would be failed between two of its heartbeats"
            )
        if not isinstance(self.max_retry, int) or self.max_retry < 0:
            raise ValueError(f"max_retry must be a non-negative integer, got {self.max_retry!r}")


def _reconnects(error: BaseException | None) -> bool:
    """
    Whether ``error`` is the database being unreachable for a while (worth a retry), not a wrong query: SQLAlchemy's
    error for a lost or refused connection, also where Optuna wrapped it (its ``StorageInternalError``).
    """
    import sqlalchemy.exc

    while error is not None:
        if isinstance(error, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)) or (
            isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated
        ):
            return True
        error = error.__cause__
    return False


class ResilientRDBStorage(optuna.storages.RDBStorage):
    """
    Optuna's ``RDBStorage`` whose calls ride out a database that cannot be reached for a while (a restart, a network
    blip): a call that fails to reach it is retried, with a growing pause of at most a second, for ``retry_for``
    seconds, and raises after that. With a heartbeat, ``retry_for`` is the grace period: the heartbeat thread (which
    Optuna lets die on the first error) keeps its trial alive through any outage shorter than that, and the other
    workers' calls wait it out too, so no live trial is failed. Connections are checked before use
    (``pool_pre_ping``), so those the server closed while it was down are replaced.

    :param retry_for: Seconds a call keeps retrying.
    """

    def __init__(self, url: str, *args: Any, retry_for: float = RETRY_WITHOUT_HEARTBEAT, **kwargs: Any) -> None:
        self.retry_for = retry_for
        super().__init__(url, *args, **kwargs)

    def _retrying(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        deadline, pause = None, 0.1
        while True:
            try:
                return call(*args, **kwargs)
            except Exception as error:
                if not _reconnects(error):
                    raise
                now = time.monotonic()
                deadline = now + self.retry_for if deadline is None else deadline
                if now >= deadline:
                    raise
                time.sleep(min(pause, deadline - now))
                pause = min(2 * pause, 1.0)


def _retried(name: str) -> Any:
    method = getattr(optuna.storages.RDBStorage, name)

    def retried(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self._retrying(method, self, *args, **kwargs)

    retried.__name__, retried.__doc__ = name, method.__doc__
    return retried


# Every call that reads or writes the database (BaseStorage's interface and the heartbeat's), retried as above.
for _name in [
    *(name for name in vars(optuna.storages.BaseStorage) if not name.startswith("_") and name != "remove_session"),
    "record_heartbeat",
    "_get_stale_trial_ids",
]:
    setattr(ResilientRDBStorage, _name, _retried(_name))


def rdb_storage(url: str, heartbeat: Heartbeat | None = None, attempts: int = 5) -> optuna.storages.RDBStorage:
    """
    A :class:`ResilientRDBStorage` for ``url``, with a heartbeat when ``heartbeat`` is given: running trials record one
    every ``heartbeat.interval`` seconds, and a trial silent for the grace period is failed and its parameters queued
    again (``RetryHeartbeatStaleTrialCallback``; ``RetryFailedTrialCallback`` before Optuna 4.9). A connection to a
    PostgreSQL server times out after :data:`CONNECT_TIMEOUT` seconds.

    Workers started together on a new database all try to create Optuna's tables; on PostgreSQL all but one fail
    (``duplicate key value violates unique constraint "pg_type_typname_nsp_index"``, or a deadlock). Creating the
    storage is therefore retried a few times: the tables the others made are then found. A server that cannot be
    reached is also retried, and reported after the last attempt.

    :param url: An SQLAlchemy URL (``postgresql://user@host:port/db``, ``sqlite:///study.db``, ...).
    :param heartbeat: The heartbeat settings, or None for none.
    :param attempts: How many times to try to create the storage.
    :return: The storage.
    :raises ConnectionError: when the database cannot be reached in ``attempts`` attempts.
    """
    import sqlalchemy
    import sqlalchemy.exc

    storages = optuna.storages
    kwargs: dict[str, Any] = {"engine_kwargs": {"pool_pre_ping": True}}
    if sqlalchemy.engine.make_url(url).get_backend_name().startswith("postgresql"):
        kwargs["engine_kwargs"]["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if heartbeat is not None:
            kwargs |= {"heartbeat_interval": heartbeat.interval, "grace_period": heartbeat.grace_period}
            kwargs["retry_for"] = heartbeat.grace_period
            if hasattr(storages, "RetryHeartbeatStaleTrialCallback"):
                retry = storages.RetryHeartbeatStaleTrialCallback(max_retry=heartbeat.max_retry)
                kwargs["heartbeat_stale_trial_callback"] = retry
            else:  # Optuna < 4.9
                kwargs["failed_trial_callback"] = storages.RetryFailedTrialCallback(max_retry=heartbeat.max_retry)
        for attempt in range(attempts):
            try:
                return ResilientRDBStorage(url, **kwargs)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError) as error:
                if attempt == attempts - 1:
                    if isinstance(error, sqlalchemy.exc.OperationalError):
                        raise ConnectionError(
                            f"The storage {display_url(url)} cannot be reached ({attempts} attempts): {error.orig}"
                        ) from error
                    raise
                time.sleep(0.2 + random.random())  # another worker is creating the tables
    raise AssertionError("unreachable")


class SurvivingStudy(optuna.Study):
    """
    A study whose ``optimize`` goes on when the trial it ran was failed by another worker meanwhile (its heartbeat
    was silent for longer than the grace period, in an outage of the database longer than that; the trial's
    parameters were queued again for a live worker): Optuna refuses to record the result of a failed trial and
    raises, which would end the worker; here it is logged, and the worker goes on to its next trial.
    """

    def optimize(  # type: ignore[override]
        self,
        func: Any,
        n_trials: int | None = None,
        timeout: float | None = None,
        n_jobs: int = 1,
        catch: Any = (),
        callbacks: Any = None,
        gc_after_trial: bool = False,
        show_progress_bar: bool = False,
    ) -> None:
        if n_jobs != 1 or show_progress_bar:  # one trial at a time is what this needs
            return super().optimize(func, n_trials, timeout, n_jobs, catch, callbacks, gc_after_trial, show_progress_bar)
        start, done = time.monotonic(), 0
        while n_trials is None or done < n_trials:
            left = None if timeout is None else timeout - (time.monotonic() - start)
            if left is not None and left <= 0:
                return
            before = {trial.number for trial in self.get_trials(deepcopy=False)}
            try:
                super().optimize(func, 1, left, 1, catch, callbacks, gc_after_trial, False)
            except (ValueError, AssertionError) as error:
                # Optuna's refusal to tell a trial that is no longer running (its "Cannot tell a FAIL trial", or the
                # assertion its clean-up then trips over), for a trial this call started that is now failed.
                refused = str(error).startswith("Cannot tell a FAIL trial") or "Should not reach" in str(error)
                failed = [t for t in self.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if t.number not in before]
                if not (refused and failed):
                    raise
                optuna.logging.get_logger("optuna").warning(
                    f"Trial {failed[0].number} was failed by another worker while it ran (its heartbeat was silent for "
                    f"longer than the grace period): its result is not recorded, its parameters were queued again. "
                    f"Going on with the next trial. ({error})"
                )
            done += 1
            if self._stop_flag:  # a callback stopped the study (MaxTrialsCallback)
                return


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail the trials whose worker stopped sending heartbeats (and queue their retries): Optuna's, without its warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class MaxTrialsSurvivingDeadWorkers(MaxTrialsCallback):
    """
    ``MaxTrialsCallback`` (what rl_zoo3's ``--max-total-trials`` uses) for storages with a heartbeat.

    rl_zoo3 counts running trials, so that N workers do not run N - 1 trials too many. But a dead worker's trial is
    also ``RUNNING`` until its grace period is over: counted as done, it would stop the last live worker one trial
    short, and nobody would be left to retry it. So when the count is reached while other workers' trials are still
    running, this callback waits, at most ``max_wait`` seconds (the grace period and a heartbeat): a trial whose worker
    died is failed in that time, its parameters queued again, and this worker goes on to run them. Trials still
    running after that have live workers (or no heartbeat at all), and this worker stops as rl_zoo3's would.

    :param n_trials: The total number of trials of the study.
    :param states: The trial states counted (rl_zoo3: complete, running and pruned).
    :param max_wait: The longest wait, in seconds, for the other workers' running trials.
    :param poll_interval: Seconds between two looks at the other workers' trials while waiting.
    """

    def __init__(
        self,
        n_trials: int,
        states: Container[TrialState] | None = (TrialState.COMPLETE,),
        max_wait: float = DEFAULT_GRACE_PERIOD + DEFAULT_HEARTBEAT_INTERVAL,
        poll_interval: float = 1.0,
    ) -> None:
        super().__init__(n_trials, states=states)
        self.max_wait = max_wait
        self.poll_interval = poll_interval

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        deadline = time.monotonic() + self.max_wait
        while True:
            fail_stale_trials(study)
            counted = study.get_trials(deepcopy=False, states=self._states)
            if len(counted) < self._n_trials:
                return  # some trials are still to run (perhaps a dead worker's, queued again)
            if time.monotonic() > deadline or not any(other.state == TrialState.RUNNING for other in counted):
                study.stop()
                return
            time.sleep(self.poll_interval)


@contextlib.contextmanager
def rdb_patches(heartbeat: Heartbeat | None) -> Iterator[None]:
    """
    While rl_zoo3 trains: give ``optuna.create_study`` an :func:`rdb_storage` (with ``heartbeat``) where rl_zoo3
    passes an RDB URL, and, on such a storage with a heartbeat, make ``--max-total-trials`` wait for other workers'
    running trials (:class:`MaxTrialsSurvivingDeadWorkers`). JournalFile storages and storage objects pass through
    unchanged, and a training that is not a search calls neither.

    :param heartbeat: The heartbeat settings, or None for none.
    """
    from rl_zoo3 import exp_manager

    create_study = optuna.create_study
    with_heartbeat: list[optuna.Study] = []  # the studies given a heartbeat storage

    def create_study_on_rdb_storage(*args: Any, **kwargs: Any) -> optuna.Study:
        storage = kwargs.get("storage")
        if not isinstance(storage, str) or is_journal(storage):
            return create_study(*args, **kwargs)
        created = create_study(*args, **{**kwargs, "storage": rdb_storage(storage, heartbeat)})
        study = SurvivingStudy(created.study_name, created._storage, created.sampler, created.pruner)
        if heartbeat is not None:
            with_heartbeat.append(study)
        # Trials of workers that died while no worker was running (all of them dead, then restarted) are failed and
        # queued again now: rl_zoo3 counts running trials before it starts, and Optuna would only look at trial starts.
        fail_stale_trials(study)
        return study

    def max_trials_callback(n_trials: int, states: Container[TrialState] | None = (TrialState.COMPLETE,)) -> MaxTrialsCallback:
        if heartbeat is None or not with_heartbeat:  # no heartbeat: a dead worker's trial never ends, do not wait
            return MaxTrialsCallback(n_trials, states=states)
        return MaxTrialsSurvivingDeadWorkers(n_trials, states=states, max_wait=heartbeat.grace_period + heartbeat.interval + 1,
                                             poll_interval=min(1.0, heartbeat.interval))  # fmt: skip

    # rl_zoo3 hands --storage to optuna.create_study as a string and builds MaxTrialsCallback itself: it has no option
    # that takes a storage object or a callback, so these two names are replaced, for the duration of the search only.
    with (
        mock.patch.object(optuna, "create_study", create_study_on_rdb_storage),
        mock.patch.object(exp_manager, "MaxTrialsCallback", max_trials_callback),
    ):
        yield
