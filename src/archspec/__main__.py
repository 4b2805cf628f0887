"""``python -m archspec`` (and ``torchrun -m archspec train ...``)."""

import sys

from .cli import main

sys.exit(main())
