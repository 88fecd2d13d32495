"""``python -m fastmux`` is the ``fastmux`` command line."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
