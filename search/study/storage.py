"""The Optuna study in SQL: storage, locks, opening a study, its sampler, telling outcomes.

Every trial and the front live in SQL (SQLite by default, any SQLAlchemy URL such as
PostgreSQL when several machines share a study). A trial's facts are read and written
through :class:`search.study.record.TrialRecord`; what the trials add up to (the objective
point, dominance, the Pareto front, presets dominated, hypervolume, the front's rows) is
:mod:`search.study.front`, whose names this module re-exports for its older importers.
Nothing here imports Ray, torch or composer.

Optuna's public API is used throughout, with two exceptions: failing another driver's
orphaned RUNNING trial needs its storage id (``FrozenTrial._trial_id``) to set the
``error`` attr, which Optuna exposes no other way, and the database's clock
(:func:`database_now`) is read through the study's storage engine; pyproject pins the
Optuna range this is tested with.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.study.front import (  # noqa: F401  (re-exported: the front's names, as importers knew them here)
    CONFIRMED,
    RETIMED,
    add_dominated,
    below_floor,
    confirmed,
    counts,
    dominates,
    front_rows,
    hypervolume,
    is_feasible,
    least_accurate_preset,
    objective_point,
    pareto_front,
    reference_row,
    retimed,
)
from search.study.record import DEFAULT_METRIC, DIRECTIONS, OBJECTIVES, Limits, TrialRecord

if TYPE_CHECKING:
    from search.trial.pipeline import TrialResult

log = logging.getLogger(__name__)

STUDIES_DIR = Path("studies")
OBJECTIVE_METRIC = "objective_metric"  # study user attr: what the accuracy objective measures
BASELINES_SUFFIX = "-baselines"
EXPORTED = "onnx:"
FLOOR_ATTR = "accuracy_floor"  # study user attr: min_accuracy: presets as the run resolved it


def default_storage(study_name: str, root: str | Path = STUDIES_DIR) -> str:
    """``sqlite:///<abs path>/studies/<study>.db`` (absolute, so it does not depend on a cwd)."""
    path = Path(root).resolve() / f"{study_name}.db"
    return f"sqlite:///{path}"


def make_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage; SQLite waits for locks instead of failing when several writers share it.

    A SQLite file is checked (``PRAGMA quick_check``, one read of the file) before it is used:
    a damaged one is a one-line ValueError (:func:`damaged_database`) rather than whatever
    query first reads the damaged page."""
    kwargs: dict = {"pool_pre_ping": True}
    db = None
    if url.startswith("sqlite:"):
        db = url.split("///", 1)[-1]
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        else:
            db = None
        kwargs = {"connect_args": {"timeout": 60}}
    for attempt in range(_SCHEMA_RACE_RETRIES + 1):
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            if db is not None:
                _check_sqlite(storage, db)
            return storage
        except Exception as e:  # SQLAlchemy raises many kinds; the user needs the URL and the reason
            if attempt < _SCHEMA_RACE_RETRIES and _is_schema_race(e):
                # Another driver is creating Optuna's tables in this empty database right now:
                # its CREATEs won, so the tables are there when this one tries again.
                log.debug("study storage tables created concurrently (%s); retrying", type(e).__name__)
                time.sleep(0.2 + random.random())
                continue
            damage = _damage(e) if db is not None else None
            if damage is not None:
                raise damaged_database(db, damage) from None
            raise ValueError(f"cannot open study storage {redact_url(url)!r}: "
                             f"{type(e).__name__}: {_first_line(e)}") from None
    raise AssertionError("unreachable")


_SCHEMA_RACE_RETRIES = 5
# How SQLite says a file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB); "database is locked" and
# the like are sqlite3.DatabaseErrors too, and not damage.
_DAMAGE_MARKERS = ("malformed", "file is not a database")


class DamagedDatabase(Exception):
    """SQLite's integrity check failed on a study database (the first problem it found)."""


def damaged_database(db: str, reason: str) -> ValueError:
    """The one-line error for a damaged SQLite study database, with what to do about it."""
    return ValueError(f"the study database {db} is damaged ({reason}): restore it from a backup, or "
                      f"salvage what is left with: sqlite3 {db} .recover | sqlite3 recovered.db")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0]


def _damage(e: BaseException | None) -> str | None:
    """SQLite's words if ``e``, or an exception it was raised from, says a file is damaged (the
    innermost such: sqlite3's own message, not SQLAlchemy's wrapping of it)."""
    found, seen = None, set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, DamagedDatabase) or any(marker in str(e) for marker in _DAMAGE_MARKERS):
            found = _first_line(e)
        e = e.__cause__ or e.__context__
    return found


def _check_sqlite(storage: optuna.storages.RDBStorage, db: str) -> None:
    """Raise :class:`DamagedDatabase` unless SQLite's quick integrity check passes on ``db``."""
    with storage.engine.connect() as conn:
        rows = conn.exec_driver_sql("PRAGMA quick_check(1)").scalars().all()
    if rows != ["ok"]:
        problems = [line for row in rows for line in str(row).splitlines() if not line.startswith("***")]
        raise DamagedDatabase(f"integrity check: {(problems or rows)[0]}")


def _is_schema_race(e: Exception) -> bool:
    """Whether ``e`` is how a database reports two sessions creating the same tables at once
    (PostgreSQL: a unique violation on ``pg_type`` or "relation ... already exists")."""
    import sqlalchemy.exc

    text = str(e).lower()
    return isinstance(e, sqlalchemy.exc.IntegrityError) or (
        isinstance(e, (sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError))
        and ("already exists" in text or "duplicate" in text))


_SECRET_KEYS = ("password", "passwd", "pwd", "sslpassword", "secret", "token")
_USERINFO = re.compile(r"(?P<user>(?:^|//|\s)[^/:@\s]*):(?P<secret>(?!//)[^@\s]*)@")  # [//]user:secret@
_SECRET_QUERY = re.compile(rf"(?i)(?P<key>\b(?:{'|'.join(_SECRET_KEYS)})=)[^&;\s]*")


def redact_url(url: str) -> str:
    """``url`` with every password masked, for messages: the one in ``user:password@`` and any
    query parameter that carries one (``?password=...``), also when the URL does not parse."""
    try:
        import sqlalchemy.engine

        parsed = sqlalchemy.engine.make_url(url)
        query = {k: ("***" if k.lower() in _SECRET_KEYS else v) for k, v in parsed.query.items()}
        url = parsed.update_query_dict(query).render_as_string(hide_password=True)
    except Exception:
        pass
    url = _USERINFO.sub(lambda m: f"{m['user']}:***@" if m["secret"] != "***" else m[0], url)
    return _SECRET_QUERY.sub(lambda m: f"{m['key']}***", url)


@contextlib.contextmanager
def exclusive(storage_url: str, study_name: str, name: str) -> Iterator[None]:
    """Hold the lock ``name`` of study ``study_name`` while the block runs, across processes
    and machines.

    For check-then-write steps that two drivers starting together on one study must not both
    do (enqueueing the presets, resuming a dead run). PostgreSQL: a session-level advisory
    lock; SQLite: an ``flock`` on ``<database>.lock`` beside the file; any other storage
    (or an in-memory SQLite): no lock.
    """
    import sqlalchemy as sa

    url = sa.engine.make_url(storage_url)
    if url.get_backend_name() == "postgresql":
        key = f"castsearch:{study_name}:{name}".encode()
        lock_id = int.from_bytes(hashlib.sha256(key).digest()[:8], "big", signed=True)
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": lock_id})
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id})
        finally:
            engine.dispose()
    elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        import fcntl

        with open(f"{url.database}.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    else:
        yield


def make_sampler(name: str = "tpe", seed: int | None = None, population_size: int = 12) -> optuna.samplers.BaseSampler:
    """The study's sampler. Each reads the limits (max_latency_ms, max_params, min_accuracy)
    from the constraint values every told trial carries (``Trial.set_constraint``), so a
    screened-out network steers it away from its region. TPE is multivariate and grouped
    (the stage parameters exist only for stages a network has); the Gaussian process
    samples the parameters every network has and draws the rest at random."""
    samplers = {
        "nsga2": lambda: optuna.samplers.NSGAIISampler(population_size=population_size, seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }
    if name not in samplers:
        raise ValueError(f"unknown sampler {name!r}; known samplers: {', '.join(samplers)}")
    with warnings.catch_warnings():  # TPE's group is experimental in Optuna; the run need not say so
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return samplers[name]()


def metric_names(metric: str) -> list[str]:
    """The objectives' names as the dashboard shows them: the accuracy objective says which
    metric it is and that it is measured on the validation split."""
    return [f"val_{metric}", *OBJECTIVES[1:]]


def open_study(name: str, storage: str | optuna.storages.BaseStorage,
               sampler: optuna.samplers.BaseSampler | None = None, metric: str = DEFAULT_METRIC) -> optuna.Study:
    """Create the study, or load it when it exists (a resumed or repeated run). A study keeps
    the accuracy metric it was created with (study user attr ``objective_metric``): values of
    two metrics on one front would not be comparable."""
    if isinstance(storage, str):
        storage = make_storage(storage)
    study = optuna.create_study(study_name=name, storage=storage, directions=list(DIRECTIONS),
                                sampler=sampler, load_if_exists=True)
    if [d.name.lower() for d in study.directions] != list(DIRECTIONS):
        raise ValueError(f"study {name!r} exists with directions "
                         f"{[d.name.lower() for d in study.directions]}, expected {list(DIRECTIONS)}")
    stored = study.user_attrs.get(OBJECTIVE_METRIC)
    if stored is None and study.get_trials(deepcopy=False):
        stored = "accuracy (test split, castsearch 0.1)"
    if stored is not None and stored != metric:
        raise ValueError(f"study {name!r} ranks candidates by {stored}, not validation {metric}: "
                         f"give this search another --study, or set objectives.accuracy.metric: {stored}")
    if stored is None:
        study.set_user_attr(OBJECTIVE_METRIC, metric)
    if study.metric_names != metric_names(metric):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metric_names(metric))
    return study


def load_existing_study(name: str, storage: str) -> optuna.Study:
    """Load a study for reading; a missing study is a clear error listing the ones there.

    A SQLite file that does not exist is an error too (reading must not create one)."""
    if storage.startswith("sqlite:///"):
        db = storage.split("///", 1)[1]
        if db != ":memory:" and not Path(db).is_file():
            raise ValueError(f"no study {name!r}: the database {db} does not exist")
    store = make_storage(storage)
    names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise ValueError(f"no study {name!r} in {redact_url(storage)} (studies there: {known})")
    return optuna.load_study(study_name=name, storage=store)


def tell_outcome(study: optuna.Study, trial: optuna.Trial, record: TrialRecord, result: TrialResult,
                 limits: Limits) -> None:
    """Store everything a finished candidate produced (``result``: the pipeline's
    :meth:`~search.trial.pipeline.TrialOutcome.provenance`) in ``record``, write it to ``trial``,
    set the constraints and tell the study COMPLETE."""
    record.add_outcome(result)
    record.write(trial)
    m = result.outcome.measurement
    # validation only (the mean over the seeds where it trained with several): test never chooses
    accuracy = result.outcome.objective
    for name, value in limits.constraint_values(accuracy, m.latency_ms, m.params).items():
        trial.set_constraint(name, value)
    # An untrained (infeasible) trial's accuracy is recorded as 0.0: it has none, and its
    # broken constraint keeps it off the front and tells the sampler to avoid the region.
    study.tell(trial, values=objective_point(accuracy if accuracy is not None else 0.0, m.latency_ms, m.params))


# The database's clock, in seconds since the epoch, by SQLAlchemy dialect.
_DATABASE_NOW = {
    "sqlite": "SELECT (julianday('now') - 2440587.5) * 86400.0",
    "postgresql": "SELECT extract(epoch from now())",
    "mysql": "SELECT UNIX_TIMESTAMP(NOW(6))",
}


def database_now(study: optuna.Study) -> float:
    """The current time by the clock of the database that holds ``study``, in seconds since
    the epoch: one clock for every host that shares the study, so a host whose own clock is
    off does not misjudge another's heartbeat. This host's clock where the storage is not
    SQL (an in-memory study) or its dialect is not known.

    Optuna keeps the storage of a study private (``Study._storage``, wrapped in a cache whose
    ``_backend`` is the :class:`optuna.storages.RDBStorage`); its ``engine`` is public."""
    storage = getattr(study, "_storage", None)
    storage = getattr(storage, "_backend", storage)
    if not isinstance(storage, optuna.storages.RDBStorage):
        return time.time()
    query = _DATABASE_NOW.get(storage.engine.dialect.name)
    if query is None:
        return time.time()
    with storage.engine.connect() as conn:
        return float(conn.exec_driver_sql(query).scalar())


def fail_orphan(study: optuna.Study, trial: FrozenTrial, reason: str) -> None:
    """Mark a RUNNING trial that no live driver will finish as FAIL, with ``reason`` as its error."""
    # Optuna has no public way to write to a trial another process asked for but its storage id.
    optuna.Trial(study, trial._trial_id).set_user_attr("error", reason)
    study.tell(trial.number, state=TrialState.FAIL)


def baselines_study_name(study_name: str) -> str:
    """Where ``castsearch baselines`` stores the reference points of ``study_name``: a study of
    its own in the same database, so the search's sampler never sees them."""
    return f"{study_name}{BASELINES_SUFFIX}"


def reference_trials(study_name: str, storage: str) -> list[FrozenTrial]:
    """The baselines stored for ``study_name``: the latest COMPLETE trial of each baseline in
    ``<study>-baselines``, best accuracy first; empty when there is no such study."""
    store = make_storage(storage)
    name = baselines_study_name(study_name)
    if name not in [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]:
        return []
    latest = {}
    for t in optuna.load_study(study_name=name, storage=store).get_trials(deepcopy=False,
                                                                        states=(TrialState.COMPLETE,)):
        baseline = TrialRecord.read(t).baseline
        if baseline is not None:
            latest[baseline] = t  # trials come in number order: a re-run replaces the older one
    return sorted(latest.values(), key=lambda t: (-t.values[0], t.values[1]))


def exported(study: optuna.Study, number: int) -> dict | None:
    """The ONNX Runtime timings (and int8 results) recorded when ``castsearch export``
    exported trial ``number``, stored as the study user attr ``onnx:<trial number>``."""
    return study.user_attrs.get(f"{EXPORTED}{number}")


def reference_rows(study_name: str, storage: str) -> list[dict]:
    """One dict per baseline reference point stored by ``castsearch baselines`` for the study
    (:func:`search.study.front.reference_row`)."""
    return [reference_row(t) for t in reference_trials(study_name, storage)]
