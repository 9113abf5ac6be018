import sys

from stalwart.cli._main import main

sys.exit(main())
