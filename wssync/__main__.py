"""``python -m wssync``: the interactive client (see :mod:`wssync.cli`)."""

import sys

from .cli import main

__all__: list[str] = []

sys.exit(main())
