"""``python -m krabgraph`` runs the command-line interface."""

import sys

from krabgraph.launch.cli import main

sys.exit(main())
