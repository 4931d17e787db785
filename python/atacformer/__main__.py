"""``python -m atacformer``: the same command line as ``atacformer``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
