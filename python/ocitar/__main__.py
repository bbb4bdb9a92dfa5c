"""``python -m ocitar``: the command line."""

from ocitar.cli import main

raise SystemExit(main())
