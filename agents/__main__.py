"""`python -m agents`: the data-center agent (needs only the `agent` extra). Wiring."""

import sys

from agents.cli import main

sys.exit(main())
