"""``python -m bench``: see :mod:`bench.cli`."""

from bench.cli import main

if __name__ == "__main__":  # not when a spawned worker process re-imports this module
    raise SystemExit(main())
