"""``python -m krabgraph`` runs the command-line interface."""

import sys

from krabgraph.launch.cli.main import main

sys.exit(main())
