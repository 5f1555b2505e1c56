"""`python -m mgc_lightning.cli ...`: the `mgc` command."""

import sys

from .entry import main

sys.exit(main())
