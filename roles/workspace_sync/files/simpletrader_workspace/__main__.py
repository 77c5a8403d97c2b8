"""``python -m simpletrader_workspace sync|eod|status|migrate``: what the wrapper on root's PATH runs."""

import sys

from .cli import main

sys.exit(main())
