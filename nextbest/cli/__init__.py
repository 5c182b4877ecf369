"""The ``nextbest`` command line. Errors are one line on stderr and a non-zero exit code.

Exit codes: 0 success, 1 failure, 2 bad input (a broken contract, a wrong argument);
`retrain` adds 3 (challenger not promoted) and 4 (another retrain holds the lock); `train`
and `retrain` stopped by SIGTERM or SIGINT exit 128 + the signal.
Set ``NEXTBEST_DEBUG=1`` to see the traceback of an unexpected failure.
"""

from __future__ import annotations

import os
import sys
import warnings

from cdp.errors import Interrupted, NextbestError
from nextbest.cli import data, demo, models, report, service, subject  # noqa: F401 - they add the commands
from nextbest.cli.base import app

# pandera imports pyspark.pandas when pyspark (the optional Spark engine) is installed, and
# pyspark warns that it does not support pandas 3; nextbest's Spark code exchanges Arrow only
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning errors into one line and an exit code.

    Usage errors are handled by typer (its message, exit 2); our own errors and anything
    unexpected become one line on stderr.
    """
    try:
        app(args=argv, prog_name="nextbest")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except NextbestError as error:
        print(f"nextbest: error: {error}", file=sys.stderr)
        return error.exit_code
    except Interrupted as stop:
        print(f"nextbest: {stop}", file=sys.stderr)
        return 128 + stop.signum
    except Exception as error:  # the CLI never shows a traceback by default
        if os.environ.get("NEXTBEST_DEBUG"):
            raise
        print(
            f"nextbest: unexpected {type(error).__name__}: {error} "
            "(set NEXTBEST_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0
