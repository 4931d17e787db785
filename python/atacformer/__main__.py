"""``python -m atacformer``: the same command line as ``atacformer``."""

import sys

from .cli import main

sys.exit(main())
