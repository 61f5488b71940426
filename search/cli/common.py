"""What every ``castsearch`` command shares: the one-line error, argument parsing helpers,
the study a command reads, number formats and a closed stdout. Torch-free."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("castsearch")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def csv(text: str | None) -> tuple[str, ...]:
    """A comma-separated flag as a tuple of its non-empty names."""
    return tuple(t.strip() for t in (text or "").split(",") if t.strip())


def resolve_arch(text: str):
    """A preset name, a JSON file holding a spec (or a spec.json/metrics.json with one), or a layer code."""
    from castmodels import PRESETS, ArchSpec

    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise CLIError(f"{text}: no such spec file")
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CLIError(f"{text}: not a JSON spec file ({e})") from None
        try:
            return ArchSpec.from_dict(data.get("arch", data) if isinstance(data, dict) else data)
        except (ValueError, TypeError) as e:
            raise CLIError(f"{text}: {e}") from None
    if text[:1] in ("C", "D") and " " in text.strip():
        return ArchSpec.from_code(text)
    raise CLIError(f"unknown preset {text!r}; known presets: {', '.join(PRESETS)} "
                   "(or give a spec .json file or a layer code like 'C16 P D32 A')")


STORAGE_ENV = "CASTSEARCH_STORAGE"  # the storage URL, kept off the command line


def storage_option(args: argparse.Namespace) -> str | None:
    """--storage, else ``$CASTSEARCH_STORAGE``, else None (the command's default).

    A password on the command line is readable by every local user (``ps``) and is kept by
    Ray as the job's entrypoint, so it is warned about: libpq reads ``PGPASSWORD`` and
    ``~/.pgpass`` for a password-less URL, or the whole URL can come from the environment."""
    from search.study.storage import redact_url

    if args.storage:
        if redact_url(args.storage) != args.storage:
            log.warning("--storage carries a password, which other users can read in the process list "
                        "and Ray keeps as the job's command line; leave it out of the URL and give it by "
                        "PGPASSWORD or ~/.pgpass, or put the whole URL in $%s", STORAGE_ENV)
        return args.storage
    return os.environ.get(STORAGE_ENV) or None


def study_and_storage(args: argparse.Namespace) -> tuple[str, str]:
    """--study/--storage (or $CASTSEARCH_STORAGE), defaulting to the only study database under studies/."""
    from search.space import valid_study_name
    from search.study.storage import STUDIES_DIR, default_storage

    storage = storage_option(args)
    if args.study:
        if not valid_study_name(args.study):
            raise CLIError(f"--study: a study name must match [A-Za-z0-9_.-]+ and not be . or .., got {args.study!r}")
        return args.study, storage or default_storage(args.study)
    if storage:
        given = "--storage" if args.storage else f"${STORAGE_ENV}"
        raise CLIError(f"{given} needs --study NAME too")
    dbs = sorted(STUDIES_DIR.glob("*.db"))
    if len(dbs) != 1:
        found = ", ".join(d.stem for d in dbs) or "none"
        raise CLIError(f"say which study with --study NAME (study databases in {STUDIES_DIR}/: {found})")
    print(f"study {dbs[0].stem!r}: the only study database in {STUDIES_DIR.resolve()}/ "
          f"(--study and --storage choose another)", file=sys.stderr)
    return dbs[0].stem, default_storage(dbs[0].stem)


def quiet_optuna() -> None:
    """Optuna logs through its own handler at INFO ("A new study created ..."); the CLI prints."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.DEBUG if log.isEnabledFor(logging.DEBUG) else optuna.logging.WARNING)


def fmt_int(n: int) -> str:
    return f"{n:,}"


def fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def stdout_closed() -> int:
    """The reader of stdout went away (``castsearch ... | head``): stop quietly, as Unix tools
    do, with the status a shell gives a process SIGPIPE ended (128 + 13). stdout is pointed at
    /dev/null, as Python's documentation advises, so that the flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141
