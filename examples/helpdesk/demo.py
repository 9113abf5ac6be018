"""``make demo`` lives in the package: ``stalwart demo --helpdesk`` (``stalwart.demo.run``,
read it there). ``python -m examples.helpdesk.demo`` runs the same."""

import sys

from stalwart.demo.run import main

if __name__ == "__main__":
    sys.exit(main())
