"""The loader MLflow stores with every nextbest model (MLflow "models from code").

``mlflow.pyfunc.load_model`` runs this file to build the model from its artifacts
(:mod:`training.packaging`); nothing is unpickled. Needs nextbest installed.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class NextbestModel(PythonModel):
    """A churn, replenishment or CLV model, as its ``model.json`` says."""

    def load_context(self, context) -> None:
        from training.packaging import load_parts

        folder = Path(context.artifacts["parts"]).parent.parent
        self.model, self.parts = load_parts(folder)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from training.packaging import predict_frame

        return predict_frame(self.parts, self.model, model_input)


mlflow.models.set_model(NextbestModel())
