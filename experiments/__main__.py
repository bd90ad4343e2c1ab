"""``python -m experiments``: the ``novatune`` command line (what the tests run)."""

from __future__ import annotations

import sys

from experiments.cli import main

sys.exit(main())
