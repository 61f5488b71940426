"""``python -m search.cli``: the ``castsearch`` command."""

import sys

from search.cli import main

sys.exit(main())
