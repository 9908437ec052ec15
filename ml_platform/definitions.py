"""The code location: `dagster dev -m ml_platform.definitions` (or workspace.yaml) loads `defs` from here.

Specs come from ML_PLATFORM_SPECS (a folder of YAML files), else the specs bundled with the package.
"""

from ml_platform.defs import build_definitions
from ml_platform.spec import load_specs

defs = build_definitions(load_specs())
