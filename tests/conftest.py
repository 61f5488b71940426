"""The whole suite times networks with the quick protocol (search.latency.config.QUICK_ENV): its
searches, also those run as subprocesses, would otherwise spend minutes on full timings.
tests/search/test_measure.py checks the full protocol itself.

Its default cache folder ($CASTSEARCH_CACHE) is one of the session's own: a search keeps its
finished trainings there for reuse (search.trial.reuse), and one session's trainings must not
stand in for the next session's, nor fill the user's cache."""

import os

import pytest

from search.latency.config import QUICK_ENV

os.environ[QUICK_ENV] = "quick"


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CASTSEARCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield
