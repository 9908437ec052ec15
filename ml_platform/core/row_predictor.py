"""Scoring one row at a time through LightGBM's single-row C API, for the endpoint's small requests.

`Booster.predict` builds a predictor object, copies its parameters and sizes its output on every call: about
40 µs of Python around a 2 µs tree walk for one row. LightGBM's own answer for low-latency serving is
`LGBM_BoosterPredictForMatSingleRowFast`, which keeps that set-up in a prepared handle. Same trees, same
iteration count, same transform: the numbers are exactly `Booster.predict`'s (tested).

A handle must not be shared between threads, so each thread prepares its own on first use.
"""

from __future__ import annotations

import ctypes
import threading
import weakref

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _safe_call

_PREDICT_NORMAL = 0  # C_API_PREDICT_NORMAL
_FLOAT64 = 1  # C_API_DTYPE_FLOAT64
_PREDICT_ROW = _LIB.LGBM_BoosterPredictForMatSingleRowFast


class RowPredictor:
    """`predict(matrix)` for a few rows of a float64 matrix: one C call per row, no Python set-up."""

    def __init__(self, booster: lgb.Booster, features: int):
        self._booster = booster
        self._features = features
        # what Booster.predict scores with by default: the best iteration, or all
        self._iterations = booster.best_iteration if booster.best_iteration > 0 else -1
        self._outputs = booster.num_model_per_iteration() if booster.num_model_per_iteration() > 1 else 1
        self._local = threading.local()

    def _handle(self) -> ctypes.c_void_p:
        handle = getattr(self._local, "handle", None)
        if handle is None:
            handle = ctypes.c_void_p()
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                    self._booster._handle,
                    ctypes.c_int(_PREDICT_NORMAL),
                    ctypes.c_int(0),
                    ctypes.c_int(self._iterations),
                    ctypes.c_int(_FLOAT64),
                    ctypes.c_int32(self._features),
                    ctypes.c_char_p(b"num_threads=1"),
                    ctypes.byref(handle),
                )
            )
            weakref.finalize(self._local, _free, handle, self._booster)  # freed with the predictor
            self._local.handle = handle
            self._local.out_len = ctypes.c_int64()
        return handle

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """The rows' predictions, shaped as `Booster.predict` shapes them (1-D, or rows × classes)."""
        handle = self._handle()
        out_len = ctypes.byref(self._local.out_len)
        matrix = np.ascontiguousarray(matrix, dtype=np.float64)
        result = np.empty((len(matrix), self._outputs), dtype=np.float64)
        row, row_step = matrix.ctypes.data, matrix.strides[0]
        out, out_step = result.ctypes.data, result.strides[0]
        for r in range(len(matrix)):
            _safe_call(
                _PREDICT_ROW(handle, ctypes.c_void_p(row + r * row_step), out_len, ctypes.c_void_p(out + r * out_step))
            )
        return result[:, 0] if self._outputs == 1 else result


def _free(handle: ctypes.c_void_p, booster: lgb.Booster) -> None:
    """Free a prepared handle (the booster is passed only to outlive it)."""
    _safe_call(_LIB.LGBM_FastConfigFree(handle))
