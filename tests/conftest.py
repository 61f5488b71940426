"""The whole suite times networks with the quick protocol (search.latency.config.QUICK_ENV): its
searches, also those run as subprocesses, would otherwise spend minutes on full timings.
tests/search/test_measure.py checks the full protocol itself."""

import os

from search.latency.config import QUICK_ENV

os.environ[QUICK_ENV] = "quick"
