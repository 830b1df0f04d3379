"""`python -m evaluator.cli`: the same command as `tunecheck`."""

import sys

from evaluator.cli.app import main

sys.exit(main())
