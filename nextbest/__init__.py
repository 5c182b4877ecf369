"""nextbest: proactive next best actions from unified customer profiles."""

from cdp import package_version

__version__ = package_version()
