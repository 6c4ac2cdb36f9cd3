"""`python -m dispatch_core`: the same command line as `dispatch-core`."""

import sys

from dispatch_core.cli import main

sys.exit(main())
