"""What the customer data platform hands over, and the base every other layer stands on.

The unified-profile contract (:mod:`cdp.contract`), reading and writing its tables
(:mod:`cdp.io`), checking them (:mod:`cdp.validation`), pseudonyms and sealed rows
(:mod:`cdp.privacy`), the errors every layer raises (:mod:`cdp.errors`), the simulated world
with known truth (:mod:`cdp.world`), the CDNOW import (:mod:`cdp.cdnow`) and a world's
summary (:mod:`cdp.summary`). Nothing here imports ``features``, ``training``, ``serving`` or
``nextbest``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """The installed version of the ``nextbest`` distribution (``0+unknown`` from a source
    tree that is not installed)."""
    try:
        return version("nextbest")
    except PackageNotFoundError:
        return "0+unknown"
