"""The adapter protocol, re-exported: it lives in ``streamcoord._adapter`` (public as
``streamcoord.Adapter``, ``streamcoord.EventParser``, ``streamcoord.HTTPRequest``), so that
``adapters`` depends on ``streamcoord`` and never the other way round."""

# A star import re-exports exactly ``streamcoord._adapter.__all__``, which type checkers
# (mypy's no-implicit-reexport) see as this module's exports too.
from streamcoord._adapter import *  # noqa: F403
from streamcoord._adapter import __all__  # noqa: F401
