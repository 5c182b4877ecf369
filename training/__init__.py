"""Training: time-based datasets, the churn, replenishment and CLV models, and MLflow.

- datasets and models: :mod:`training.dataset`, :mod:`training.churn`,
  :mod:`training.replenishment`, :mod:`training.clv` (scikit-learn estimators);
- the registry and store (:mod:`training.registry`), the champion gate
  (:mod:`training.gate` judges, :mod:`training.champion` applies), run logging
  (:mod:`training.tracking`), packaging as MLflow pyfunc models (:mod:`training.packaging`);
- scoring with the champions (:mod:`training.scoring`), the training pipeline
  (:mod:`training.pipeline`), the scheduled job (:mod:`training.retrain`,
  :mod:`training.jobs`, :mod:`training.recovery`), drift (:mod:`training.drift`).
"""
