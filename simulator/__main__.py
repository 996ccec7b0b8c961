"""``python -m simulator``: run the simulator server."""

from simulator.server import main

if __name__ == "__main__":
    raise SystemExit(main())
