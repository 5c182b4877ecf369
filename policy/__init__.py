"""The decision: what to propose to a customer now, and why. Pure functions and small value
objects, no service: the action catalog and its rules (:mod:`policy.catalog`, read from
``actions.yaml``), ranking by expected value (:mod:`policy.ranking`, over
:mod:`policy.profile`), reading a message (:mod:`policy.language`), locale matching
(:mod:`policy.locales`), a customer's drivers as reasons (:mod:`policy.drivers`), learning from
feedback (:mod:`policy.learning`) and off-policy evaluation (:mod:`policy.offpolicy`).

Nothing here reads a file, a socket, a database or the clock, except the YAML business rules
through :mod:`policy.loader`; ``now`` is always an argument.
"""
