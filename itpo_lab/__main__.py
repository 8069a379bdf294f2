"""``python -m itpo_lab``: the lab's command line (:mod:`itpo_lab.cli`)."""

import sys

from itpo_lab.cli import main

sys.exit(main())
