"""Moments, settled once at the edge.

An as-of (or any moment a user, a file or a request gives) enters through one function,
:func:`as_utc`, at the edge that receives it: the CLI's parsers, the service's settings and
requests, a snapshot's manifest, and the notebook API (``build_features``, the label
functions, ``training_cutoffs``, ``pipeline.train``, ``scoring.score``). What comes out is
a timezone-aware ``datetime`` in UTC (:data:`Moment`); the functions further in take that
type as it is and never normalise again.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

#: What the edges accept: an ISO string, a datetime or a pandas Timestamp (naive means UTC).
AsOf = datetime | pd.Timestamp | str
#: A settled moment: a timezone-aware ``datetime`` in UTC (microsecond precision).
Moment = datetime


def as_utc(value: AsOf) -> Moment:
    """``value`` as a timezone-aware UTC ``datetime`` (a naive one is taken as UTC). A value
    already settled (a UTC ``datetime``) is returned as it is."""
    if type(value) is datetime and value.tzinfo is UTC:
        return value
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()
