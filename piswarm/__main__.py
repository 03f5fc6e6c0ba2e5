"""``python -m piswarm`` is the same as the ``piswarm`` command."""

from piswarm.cli import main

raise SystemExit(main())
