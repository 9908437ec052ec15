"""What each `expectations.columns.<name>.dtype` accepts, as a test of a pandas dtype: shared by the Pandera
schema and `ml-platform check --data` (which must not pay for importing Pandera)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

DTYPES: dict[str, Callable[[Any], bool]] = {
    "int": pd.api.types.is_integer_dtype,
    "float": lambda d: pd.api.types.is_float_dtype(d) or pd.api.types.is_integer_dtype(d),
    "str": lambda d: (
        pd.api.types.is_object_dtype(d) or pd.api.types.is_string_dtype(d) or isinstance(d, pd.CategoricalDtype)
    ),
    "bool": pd.api.types.is_bool_dtype,
    "datetime": pd.api.types.is_datetime64_any_dtype,
}
