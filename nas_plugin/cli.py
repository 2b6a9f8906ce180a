"""Shared entry-point wrapper for the scripts in tools/: a bad value ends the run with one sentence, not a traceback."""

import sys
from pathlib import Path

from .errors import NASError


def run(main, argv=None):
    """Call `main(argv)`; a NASError prints `<tool>: error: <message>` to stderr and exits with status 2."""
    try:
        return main(argv)
    except NASError as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        sys.exit(2)
