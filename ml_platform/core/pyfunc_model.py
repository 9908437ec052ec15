"""The MLflow pyfunc flavour of a platform model, logged as code (MLflow "models from code").

MLflow loads this file instead of unpickling an object: `load_context` reads the native LightGBM text file
and the JSON manifest through `Model.load`, so `mlflow.pyfunc.load_model("models:/<name>@champion")`
predicts exactly what the platform's own scorer predicts (`Model.answer`: see there for the answer's shape).

It imports no `ml_platform`: `Model` comes from `platform_scorer`, the copy of the platform's model.py, labels.py
and row_predictor.py bundled into the model's own folder (`code/`, which MLflow puts on sys.path before loading
this file; see pyfunc_flavour). So the model loads wherever its pinned requirements are installed. Only
`pyfunc_flavour.log_arguments` logs it. Each logged version carries its own copy of this file and of that code:
versions logged before it (which import `ml_platform.core.model`) keep loading as they did.
"""

from typing import TYPE_CHECKING

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

if TYPE_CHECKING:  # the very file that is bundled, as the type checker finds it
    from ml_platform.core.model import Model
else:
    from platform_scorer.model import Model

ARTIFACT = "model"  # the artifact that is the model folder (pyfunc_flavour.ARTIFACT)


class PlatformModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        self.model = Model.load(context.artifacts[ARTIFACT])

    # MLflow reads predict's type hints to validate its input; unannotated, it validates against the signature
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # see the line above
        # Served without a signature (a caller's own save), "instances" arrive as a dict of columns or row list.
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.model.answer(frame)


mlflow.models.set_model(PlatformModel())
