"""The MLflow pyfunc flavour of a platform model, logged as code (MLflow "models from code").

MLflow loads this file instead of unpickling an object: `load_context` reads the native LightGBM text file
and the JSON manifest through `Model.load`, so `mlflow.pyfunc.load_model("models:/<name>@champion")`
predicts exactly what the platform's own scorer predicts.

A regressor answers the ndarray of values. A classifier answers what the endpoint's v1 route answers, one row
per input row: `prediction` (binary: the positive class's probability; multiclass: the list of probabilities
in class order), `label` (the predicted class) and, for multiclass, `probabilities` (a dict by class name).
Each logged version carries its own copy of this file, so versions logged before keep answering arrays.
"""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from ml_platform.core.model import Model

ARTIFACT = "model"


class PlatformModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        self.model = Model.load(context.artifacts[ARTIFACT])

    # MLflow reads predict's type hints to validate its input; unannotated, it accepts any shape
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # see the line above
        # Without a signature, MLflow's server hands over "instances" as a dict of columns or a list of rows.
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        outputs = self.model.predict(frame)
        labels = self.model.labels
        if labels is None:
            return outputs
        fields = labels.response(outputs)
        answer = {"prediction": outputs.tolist(), "label": fields["labels"]}
        if "probabilities" in fields:
            answer["probabilities"] = fields["probabilities"]
        return pd.DataFrame(answer, index=frame.index)


mlflow.models.set_model(PlatformModel())
