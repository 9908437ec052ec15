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

    def predict(self, context, model_input, params=None):
        # Without a signature, MLflow's server hands over "instances" as a dict of columns or a list of rows.
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.model.predict(frame)


mlflow.models.set_model(PlatformModel())
