"""The spec rules about a target and its task: what a classifier's classes and positive class must be, the
boolean trap of a multiclass expression (found from its syntax: `ml-platform check` reads no data), and the
metrics each task reports."""

from __future__ import annotations

import ast
from typing import Any

from ml_platform.core.sources import text_columns
from ml_platform.spec.sections import ModelSpec

Problem = tuple[str, Any, str]

# The metrics each task reports (core.evaluation.task_metrics, which a test keeps in step: importing it here
# would pull LightGBM into `ml-platform check`).
TASK_METRICS = {
    "binary": ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy"),
    "multiclass": ("macro_f1", "log_loss", "accuracy"),
    "regression": ("rmse", "mae", "r2"),
}

_QUOTE = 'quoted, e.g. positive: "yes" (YAML reads unquoted yes/no/on/off/true/false as booleans)'


def target_task(spec: ModelSpec) -> list[Problem]:
    """The target suits the task: classes and positive only for classifiers and consistent, a multiclass
    expression that yields more than booleans, and a text binary target that names its positive class."""
    found: list[Problem] = []
    task, target = spec.task, spec.target
    classes, positive = target.classes, target.positive
    text = _text_target(spec)
    if classes is not None and task == "regression":
        found.append(
            (
                "target.classes",
                classes,
                "only for task binary or multiclass (the classes of a "
                "classifier, in code order); remove it for task regression",
            )
        )
    if positive is not None and task != "binary":
        found.append(
            (
                "target.positive",
                positive,
                f"only for task binary (the class whose probability the model answers); remove it for task {task}",
            )
        )
    if classes is not None and task != "regression":
        # 1 and True are one label to pandas, 1 and "1" one key of the endpoint's probabilities
        duplicates = [c for i, c in enumerate(classes) if any(c == d or str(c) == str(d) for d in classes[:i])]
        if duplicates:
            found.append(
                (
                    "target.classes",
                    classes,
                    f"each class listed once, also as text (repeated: {', '.join(repr(c) for c in duplicates)})",
                )
            )
        if task == "binary" and len(classes) != 2:
            found.append(("target.classes", classes, "exactly two classes for task binary (or task: multiclass)"))
        if text and any(isinstance(c, bool) for c in classes):
            found.append(
                (
                    "target.classes",
                    classes,
                    f"the text labels of the target ({text}), each one quoted "
                    "(YAML reads unquoted yes/no/on/off/true/false as booleans)",
                )
            )
        if positive is not None and task == "binary" and positive not in classes:
            hint = f", {_QUOTE}" if isinstance(positive, bool) and any(isinstance(c, str) for c in classes) else ""
            found.append(
                ("target.positive", positive, f"one of target.classes ({', '.join(repr(c) for c in classes)}){hint}")
            )
    if task == "multiclass" and target.expression and _yields_booleans(_parsed(target.expression)):
        found.append(("target.expression", target.expression, _trap(target.expression)))
    if task == "binary":
        found += _binary_positive(spec, text)
    return found


def _binary_positive(spec: ModelSpec, text: str | None) -> list[Problem]:
    """A binary target of text labels names its positive class, as text; one of booleans, as a boolean."""
    target, positive = spec.target, spec.target.positive
    text_classes = any(isinstance(c, str) for c in target.classes or ())
    if positive is None and (text or text_classes):
        why = text or "target.classes are text"
        return [
            (
                "target.positive",
                None,
                f"required when the target is text ({why}): the class whose probability the model answers, {_QUOTE}",
            )
        ]
    if positive is not None and text and not isinstance(positive, str):
        return [("target.positive", positive, f"a text label of the target ({text}), {_QUOTE}")]
    if (
        positive is not None
        and target.expression
        and not target.classes
        and _yields_booleans(_parsed(target.expression))
        and positive not in (True, False)
    ):
        return [
            ("target.positive", positive, f"true or false: target.expression {target.expression!r} yields booleans")
        ]
    return []


def _text_target(spec: ModelSpec) -> str | None:
    """Why the target is known to hold text without reading any data, else None."""
    column = spec.target.column
    if column is None:
        return None
    expected = spec.expectations.columns.get(column)
    if expected is not None and expected.dtype == "str":
        return f"expectations.columns.{column}.dtype is str"
    if column in (text_columns(spec.source) or ()):
        return f"{column!r} is a text column of the {spec.source.kind} source"
    return None


def _parsed(expression: str) -> ast.expr:
    return ast.parse(expression, mode="eval").body


_BOOLEAN_OPS = (ast.BitAnd, ast.BitOr, ast.BitXor, ast.Add)


def _yields_booleans(node: ast.expr) -> bool:
    """Whether an expression surely yields booleans: comparisons, `and`/`or`/`not`, True/False, and `~`, `&`,
    `|`, `^` or `+` of booleans (in pandas and numpy, bool + bool is a logical OR, not a count)."""
    if isinstance(node, (ast.Compare, ast.BoolOp)):
        return True
    if isinstance(node, ast.Constant):
        return isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.Not) or (isinstance(node.op, ast.Invert) and _yields_booleans(node.operand))
    if isinstance(node, ast.BinOp) and isinstance(node.op, _BOOLEAN_OPS):
        return _yields_booleans(node.left) and _yields_booleans(node.right)
    return False


class _Counted(ast.NodeTransformer):
    """Each boolean operand of `+` multiplied by 1, so the sum counts (`(a > 1) * 1 + (a > 2) * 1`)."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.BinOp:
        self.generic_visit(node)
        if isinstance(node.op, ast.Add):
            node.left, node.right = (
                ast.BinOp(side, ast.Mult(), ast.Constant(1)) if _yields_booleans(side) else side
                for side in (node.left, node.right)
            )
        return node


def _trap(expression: str) -> str:
    """What to write instead of a multiclass expression that yields booleans."""
    counted = ast.unparse(_Counted().visit(ast.parse(expression, mode="eval")))
    said = (
        "an expression that yields counts or labels for task multiclass: this one yields booleans "
        "(True/False, at most two classes)"
    )
    if counted == ast.unparse(ast.parse(expression, mode="eval")):
        return f"{said}; use task: binary, or an expression that yields more than two values"
    return (
        f"{said}; in pandas `+` of two comparisons is a logical OR, not a count. Count with `* 1`: "
        f"{counted}; or use task: binary"
    )


def metrics(spec: ModelSpec) -> list[Problem]:
    """The gate's and the live metric are metrics the task reports."""
    allowed = TASK_METRICS[spec.task]
    found: list[Problem] = []
    for field, metric in (
        ("gates.metric", spec.gates.metric),
        ("monitoring.performance.metric", spec.monitoring.performance.metric),
    ):
        if metric is not None and metric not in allowed:
            found.append((field, metric, f"a metric of task {spec.task}: {', '.join(allowed)}"))
    return found
