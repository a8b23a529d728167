"""``python -m taskstore``."""

import sys

from taskstore.cli import main

sys.exit(main())
