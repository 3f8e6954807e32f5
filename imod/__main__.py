"""``python -m imod``: the ``imod`` command line."""

import sys

from imod.cli import main

if __name__ == "__main__":
    sys.exit(main())
