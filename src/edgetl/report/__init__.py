"""`edgetl report`: one self-contained HTML page of a run (or an exported outside model's folder) to look at.

The package is callable: `edgetl.report(run)` is `edgetl.api.report` (see edgetl/api.py for why).
"""

import sys

from edgetl.api import CallablePackage

sys.modules[__name__].__class__ = CallablePackage
