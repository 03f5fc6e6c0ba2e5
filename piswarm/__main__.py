"""``python -m piswarm`` is the same as the ``piswarm`` command."""

from piswarm.cli import main

if __name__ == "__main__":  # spawned sieve workers import this module too
    raise SystemExit(main())
