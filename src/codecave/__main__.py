"""``python -m codecave`` runs the CLI."""

import sys

from codecave.cli.main import main

sys.exit(main())
