"""Training: from a folder of labelled images to a finished run directory.

The package is callable: `edgetl.train(data, out, **options)` is `edgetl.api.train` (see edgetl/api.py for why).
"""

import sys

from edgetl.api import CallablePackage

sys.modules[__name__].__class__ = CallablePackage
