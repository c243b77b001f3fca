"""Export formats, one module each, and the verification every export goes through.

The package is callable: `edgetl.export(run_or_keras_file, formats, **options)` is `edgetl.api.export` (see
edgetl/api.py for why).
"""

import sys

from edgetl.api import CallablePackage

sys.modules[__name__].__class__ = CallablePackage
