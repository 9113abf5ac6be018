"""``python -m stalwart``: the command line, as the ``stalwart`` script."""

import sys

from stalwart.cli import main

sys.exit(main())
