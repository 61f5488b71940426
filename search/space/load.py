"""The entry points that turn a search-space file (:func:`load_space`) or an already-parsed
document (:func:`space_from_dict`) into a validated :class:`~search.space.schema.SearchSpace`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search.space.schema import SearchSpace
from search.space.sections import _parse
from search.space.yamlfile import _read_text, _read_yaml


def space_from_dict(data: dict, source: str = "<dict>") -> SearchSpace:
    """Validate an already-parsed document; errors name ``source``."""
    return _parse(data, source, None)


def load_space(path: str | Path, overrides: dict[tuple[str, ...], Any] | None = None) -> SearchSpace:
    """Read and validate a search-space YAML file.

    ``overrides`` replace values before validation, keyed by their path, e.g.
    ``{("budget", "trials"): 10, ("data", "source"): "images/"}`` (the CLI's flags), so a
    bad override is reported like a bad value in the file.
    """
    source = str(path)
    data = _read_yaml(_read_text(path, source), source)
    for keys, value in (overrides or {}).items():
        node = data
        for key in keys[:-1]:
            if isinstance(node, dict) and node.get(key) is None:
                node[key] = {}  # an absent or empty section
            node = node[key] if isinstance(node, dict) else None
        if isinstance(node, dict):  # otherwise the validation reports what is wrong at that path
            node[keys[-1]] = value
    return _parse(data, source, source)
