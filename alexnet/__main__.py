"""`python -m alexnet` is the same entry as the `alexnet` command."""

import sys

from alexnet.cli import main

sys.exit(main())
