"""Shared entry-point wrapper for the scripts in tools/: a bad value ends the run with one sentence, not a traceback."""

import sys
from pathlib import Path

from .errors import NASError


def run(main, argv=None, kept="outputs are written whole or not at all, so nothing half-written is left"):
    """Call `main(argv)`; a NASError prints `<tool>: error: <message>` to stderr and exits with status 2, and Ctrl-C
    prints `<tool>: interrupted; <kept>` (what was kept, how to go on) and exits with status 130."""
    tool = Path(sys.argv[0]).name
    try:
        return main(argv)
    except NASError as e:
        print(f"{tool}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"\n{tool}: interrupted; {kept}.", file=sys.stderr)
        sys.exit(130)
