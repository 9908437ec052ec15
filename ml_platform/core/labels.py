"""A classifier's labels: which class each LightGBM code stands for, fixed when the model is trained.

LightGBM sees codes 0..k-1; everything a user reads (the endpoint, MLflow's pyfunc, batch predictions, metrics,
the model card, drift, live performance) speaks the labels. The mapping travels in the model's manifest, so a
model scores and explains the same way wherever it is loaded. Binary models keep `(negative, positive)` order:
code 1, the probability LightGBM returns, is the positive class.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

UNKNOWN = -1.0  # the code of a missing label, or of one the model never saw
_YAML_HINT = 'quote it (YAML reads unquoted yes/no/on/off/true/false as booleans), e.g. positive: "yes"'


class LabelError(ValueError):
    """A target that cannot be trained as the spec says; the message starts with the spec field at fault."""


def is_text(values: pd.Series) -> bool:
    """Whether a target holds text labels (object, string or categorical of str), not numbers or booleans."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.categories.inferred_type in ("string", "mixed")
    if pd.api.types.is_string_dtype(values.dtype):
        present = values.dropna()
        return len(present) == 0 or bool(present.map(lambda v: isinstance(v, str)).any())
    return False


def as_labels(values: pd.Series) -> pd.Series:
    """Labels as plain object values: text as `str`, numbers and booleans kept, missing stays missing."""
    if not is_text(values):
        return values
    text = values.to_numpy(dtype=object, copy=True)
    present = pd.notna(text)
    text[present] = [str(value) for value in text[present]]
    return pd.Series(text, index=values.index, name=values.name, dtype=object)


def positives(values: pd.Series, positive: Any) -> pd.Series:
    """A binary target as its positive rate's terms: text labels compared with `positive`; 0/1 and booleans as
    they are (1 and True are positive)."""
    return values == positive if positive is not None and is_text(values) else values


def probability_vectors(values: pd.Series, size: int) -> pd.Series:
    """Which values are probability vectors over `size` classes (a logged multiclass answer); a vector of
    another length was scored by a model with other classes."""
    return values.map(lambda v: isinstance(v, (list, tuple, np.ndarray)) and len(v) == size).astype(bool)


def scalar(value: Any) -> Any:
    """A label as a Python scalar (numpy's int64 would turn into the text "1" in a JSON manifest)."""
    return value.item() if isinstance(value, np.generic) else value


def _rows(scores: np.ndarray) -> list[list[float]]:
    """Multiclass scores as Python lists, one per row (none for no rows)."""
    return np.atleast_2d(scores).tolist() if len(scores) else []


def _distinct(values: Iterable[Any]) -> list[Any]:
    present = pd.Series(list(values), dtype=object).dropna()
    return [scalar(v) for v in pd.unique(present)]


def _sorted(values: Iterable[Any]) -> list[Any]:
    values = list(values)
    try:
        return sorted(values)
    except TypeError:  # mixed types: a stable order all the same
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


def _shown(values: list[Any], most: int = 5) -> str:
    more = f", … ({len(values)} in all)" if len(values) > most else ""
    return ", ".join(repr(v) for v in values[:most]) + more


@dataclass(frozen=True)
class Labels:
    """The classes of a classifier in code order (code i is `classes[i]`)."""

    task: str
    classes: tuple[Any, ...]

    @property
    def positive(self) -> Any:
        """The binary positive class (code 1, whose probability the model answers); None for multiclass."""
        return self.classes[1] if self.task == "binary" else None

    @classmethod
    def fit(
        cls,
        task: str,
        train: Iterable[Any],
        valid: Iterable[Any] = (),
        *,
        declared: list[Any] | None = None,
        positive: Any = None,
        target: str = "target",
    ) -> Labels:
        """The classes of the rows a model trains on (`train`, plus `valid` when it is refitted on them).

        Multiclass: the order `declared` gives (`target.classes`), else sorted. Binary: `(negative, positive)`,
        where `positive` is `target.positive`, else the larger of two numeric classes (1, True). Refuses a
        single class, more than two binary classes and a positive class the data does not hold.
        """
        seen, extra = _distinct(train), _distinct(valid)
        if declared:  # rows outside the declared classes are not trained on
            seen = [c for c in seen if c in set(declared)]
        if len(seen) < 2:
            where = "target.classes" if declared else "target"
            raise LabelError(
                f"{where}: the training rows hold a single class "
                f"({_shown(seen) if seen else 'none'}) of {target!r}; a classifier needs two or more "
                "(widen training.window_days or check target)"
            )
        observed = _sorted(dict.fromkeys([*seen, *extra]))
        classes = [scalar(c) for c in declared] if declared else observed
        if task == "binary":
            return cls(task, cls._binary(classes, positive, target))
        return cls(task, tuple(classes))

    @staticmethod
    def _binary(classes: list[Any], positive: Any, target: str) -> tuple[Any, ...]:
        if len(classes) > 2:
            raise LabelError(
                f"task: 'binary' but {target!r} has {len(classes)} classes ({_shown(classes)}); "
                "use task: multiclass, or a target.expression that yields two values"
            )
        if positive is None:
            if any(isinstance(c, str) for c in classes):
                raise LabelError(
                    f"target.positive: required when the target is text (found {_shown(classes)}); "
                    f"name the class whose probability the model answers, e.g. positive: "
                    f"{str(classes[-1])!r}"
                )
            return tuple(_sorted(classes))
        match = [c for c in classes if c == positive]
        if not match:
            hint = f"; {_YAML_HINT}" if isinstance(positive, bool) else ""
            raise LabelError(
                f"target.positive: {positive!r} is not a value of {target!r} (found {_shown(classes)}){hint}"
            )
        others = [c for c in classes if c is not match[0]]
        return (others[0], match[0])

    @classmethod
    def of_manifest(cls, manifest: dict[str, Any]) -> Labels | None:
        """A model's labels from its manifest; None for regression (or a manifest without classes)."""
        classes = manifest.get("classes")
        if manifest.get("task") not in ("binary", "multiclass") or not classes:
            return None
        return cls(manifest["task"], tuple(classes))

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"classes": list(self.classes)}
        if self.task == "binary":
            out["positive"] = self.positive
        return out

    @property
    def _index(self) -> pd.Index:
        index: pd.Index = pd.Index(list(self.classes), dtype=object)
        return index

    def encode(self, values: Iterable[Any]) -> np.ndarray:
        """Float codes of labels, `UNKNOWN` (-1) for a missing label or one outside the classes."""
        values = pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values.astype(object)
        codes = self._index.get_indexer(pd.Index(values.to_numpy(dtype=object), dtype=object))
        codes = codes.astype(np.float64)
        codes[codes < 0] = UNKNOWN
        return codes

    def unseen(self, values: Iterable[Any]) -> dict[str, int]:
        """How many present labels fall outside the classes, per label (text keys, most frequent first)."""
        values = pd.Series(values, dtype=object).dropna()
        outside = values[self.encode(values) == UNKNOWN]
        return {str(k): int(v) for k, v in outside.astype(str).value_counts().items()}

    def predicted_codes(self, scores: np.ndarray) -> np.ndarray:
        """The predicted class's code per row: binary at probability 0.5 (as `accuracy`), else the argmax."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.task == "binary":
            return (scores >= 0.5).astype(np.int64)
        return np.atleast_2d(scores).argmax(axis=1) if len(scores) else np.empty(0, dtype=np.int64)

    def predicted(self, scores: np.ndarray) -> list[Any]:
        """The predicted label per row (binary at 0.5, multiclass the argmax, ties to the first class), as Python
        scalars (safe for JSON). Plain Python over `tolist()`: on the endpoint's few-row requests numpy's
        per-call overhead would cost more than the work."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.task == "binary":
            negative, positive = self.classes
            return [positive if p >= 0.5 else negative for p in scores.tolist()]
        return self._argmax(_rows(scores))

    def by_name(self, scores: np.ndarray) -> list[dict[str, float]]:
        """Multiclass probabilities keyed by class name (text), one dict per row."""
        return self._named(_rows(np.asarray(scores, dtype=np.float64)))

    def response(self, scores: np.ndarray) -> dict[str, list[Any]]:
        """The label fields every output shares (the endpoint, pyfunc and batch predictions): `labels`, and for
        multiclass `probabilities` by class name."""
        if self.task == "binary":
            return {"labels": self.predicted(scores)}
        rows = _rows(np.asarray(scores, dtype=np.float64))
        return {"labels": self._argmax(rows), "probabilities": self._named(rows)}

    def _argmax(self, rows: list[list[float]]) -> list[Any]:
        classes = self.classes
        return [classes[row.index(max(row))] for row in rows]

    def _named(self, rows: list[list[float]]) -> list[dict[str, float]]:
        names = self._names
        return [dict(zip(names, row, strict=True)) for row in rows]

    @cached_property
    def _names(self) -> list[str]:
        return [str(c) for c in self.classes]

    def aligned(self, scores: np.ndarray, classes: Iterable[Any]) -> np.ndarray:
        """Multiclass scores in another class order (`classes`), 0 for a class this model does not know."""
        classes = list(classes)
        scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
        out = np.zeros((len(scores), len(classes)))
        index = self._index
        for j, label in enumerate(classes):
            i = index.get_indexer(pd.Index([label]))[0]  # the Index pandas would build of [label]
            if i >= 0:
                out[:, j] = scores[:, i]
        return out
