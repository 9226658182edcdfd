"""`python -m alexnet` is the same entry as the `alexnet` command."""

import sys

from alexnet.entry import main

sys.exit(main())
