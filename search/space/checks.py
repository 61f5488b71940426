"""Value checks for a search-space file: each takes a value as read and returns it
normalised or raises ValueError saying the rule and the value; and the upper bounds
(``MAX_*``) on the numbers a file gives."""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable
from typing import Any

from search.data.rules import valid_channels
from search.training.recipe import OPTIMIZERS

# Upper bounds on the numbers a file gives: beyond them a value is a typo, and some (a seed
# numpy cannot take, a grid Optuna cannot step) would only fail once a run is under way.
MAX_SEEDS = 10  # objectives.accuracy.seeds: each one is a full training of every finished trial
MAX_STAGES = MAX_BLOCKS = 16  # more is a typo, not a small CNN
MAX_CHANNELS = 4096  # architecture.channels, width and max_channels
MAX_IMAGE_SIZE = 1024
MAX_BATCH_SIZE = 4096
MAX_EPOCHS = 10_000
MAX_LR = 10.0
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
MAX_POPULATION = 10_000
MAX_TIMEOUT_S = 365 * 86400.0
MAX_GRID_POINTS = 1_000_000  # points of a stepped range

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")
_DURATION = re.compile(r"(?:(\d+(?:\.\d*)?)d)?(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m)?(?:(\d+(?:\.\d*)?)s)?")
_DURATION_UNITS = (86400.0, 3600.0, 60.0, 1.0)

Check = Callable[[Any], Any]


def _got(value: Any) -> str:
    return f"got {reprlib.repr(value)}"


def _key_text(key: Any) -> str:
    """A key as an error's key path shows it: as written when it is a plain name, otherwise
    quoted and shortened (a key may be long, or hold a line break)."""
    text = str(key)
    return text if _PLAIN_KEY.fullmatch(text) else reprlib.repr(key)


def _integer(minimum: int, maximum: int | None = None) -> Check:
    rule = f"must be an integer >= {minimum}" if maximum is None else f"must be an integer in [{minimum}, {maximum}]"

    def check(value: Any) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not (ok and value >= minimum and (maximum is None or value <= maximum)):
            raise ValueError(f"{rule}, {_got(value)}")
        return value

    return check


def _number(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False) -> Check:
    if high == math.inf:
        rule = f"must be a number {'>' if low_open else '>='} {low:g}"
    else:
        rule = f"must be a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(value: Any) -> float:
        number = _as_float(value)
        ok = math.isfinite(number) and (number > low if low_open else number >= low) and (
            number < high if high_open else number <= high)
        if not ok:
            raise ValueError(f"{rule}, {_got(value)}{_number_text_hint(value)}")
        return number

    return check


def _as_float(value: Any) -> float:
    """``value`` as a float: NaN when it is not a number, inf when it is an int too large for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _number_text_hint(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return " (YAML reads 3e-4 and 1.0e5 as text: write 3.0e-4 and 1.0e+5, with a dot and a signed exponent)"


def _one_of(known: tuple) -> Check:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or value not in known:  # True == 1 must not pass for 1
            raise ValueError(f"must be one of {', '.join(map(str, known))}, {_got(value)}")
        return value

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, {_got(value)}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, {_got(value)}")
    return value


def _channels(value: Any) -> int | str:
    if not valid_channels(value):  # 1.0 and true are typos, not 1
        raise ValueError(f"must be auto, 1 (grey) or 3 (RGB), {_got(value)}")
    return value


def _optimizer(value: Any) -> str:
    if _text(value) not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {reprlib.repr(value)}; known: {', '.join(OPTIMIZERS)}")
    return value


def _optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def parse_duration(text: str | int | float) -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"2h"``, ``"1h30m"`` or ``"1d"``; must be > 0."""
    seconds = math.nan
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = _as_float(text)
    elif isinstance(text, str):
        s = text.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d*)?", s):
            seconds = float(s)
        elif (m := _DURATION.fullmatch(s)) and any(m.groups()):
            seconds = sum(float(g) * unit for g, unit in zip(m.groups(), _DURATION_UNITS, strict=True) if g)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"a duration must be seconds > 0 or text like '90s', '30m', '2h', '1h30m', {_got(text)}")
    return seconds


def _duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds > MAX_TIMEOUT_S:
        raise ValueError(f"a duration must be at most 365d ({MAX_TIMEOUT_S:g} s), {_got(value)}")
    return seconds

