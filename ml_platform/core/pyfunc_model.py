"""The MLflow pyfunc flavour of a platform model, logged as code (MLflow "models from code").

MLflow loads this file instead of unpickling an object: `load_context` reads the native LightGBM text file
and the JSON manifest through `Model.load`, so `mlflow.pyfunc.load_model("models:/<name>@champion")`
predicts exactly what the platform's own scorer predicts.
"""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from ml_platform.core.model import Model

ARTIFACT = "model"


class PlatformModel(PythonModel):
    def load_context(self, context):
        self.model = Model.load(context.artifacts[ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None):
        return self.model.predict(model_input)


mlflow.models.set_model(PlatformModel())
