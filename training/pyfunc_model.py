"""The loader MLflow stores with every nextbest model (MLflow "models from code").

``mlflow.pyfunc.load_model`` runs this file to build the model from its artifacts
(:mod:`training.packaging`); nothing is unpickled. The packages it imports travel with the
model (``code_paths``): nextbest need not be installed where it loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext


class NextbestModel(PythonModel):
    """A churn, replenishment or CLV model, as its ``model.json`` says."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load the stored parts (checked against their SHA-256) when MLflow loads the model."""
        from training.packaging import load_parts

        folder = Path(context.artifacts["parts"]).parent.parent
        self.model, self.parts = load_parts(folder)

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """The model's predictions for each row of ``model_input`` (a features snapshot's
        rows), as :func:`training.packaging.predict_frame` describes."""
        from training.packaging import predict_frame, utc_times

        times = self.parts.get("time_inputs", ())
        return predict_frame(self.parts, self.model, utc_times(model_input, times))


mlflow.models.set_model(NextbestModel())
