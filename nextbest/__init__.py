"""nextbest: proactive next best actions from unified customer profiles."""

__version__ = "0.1.0"
