"""`python -m rwm.cli ...` runs the `rwm` command."""

import sys

from rwm.cli import main

sys.exit(main())
