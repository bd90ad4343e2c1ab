"""``python -m experiments.cli``: the same as ``novatune`` (and ``python -m experiments``)."""

from __future__ import annotations

import sys

from experiments.cli import main

sys.exit(main())
