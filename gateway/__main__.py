"""python -m gateway: the same entry point as the console script."""

import sys

from gateway.cli import main

sys.exit(main())
