"""Point-in-time feature pipelines: from a contract folder to feature tables as of a moment.

Everything is computed from rows at or before ``as_of`` (:mod:`features.time`):
:func:`features.build.build_features` makes the customer table (RFM and segments, purchase
intervals, engagement with identity stitching, lifetimes features) and the customer x
consumable pair table (replenishment cycles); :mod:`features.labels` makes the labels of a
later window; :mod:`features.profile` the frames a chatbot reads beyond model features.
Imports only :mod:`cdp` below it.
"""
