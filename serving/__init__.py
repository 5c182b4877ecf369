"""The service chatbots call: BentoML outside (:mod:`serving.service`), a FastAPI app of
routes inside (:mod:`serving.api`, schemas in :mod:`serving.schemas`), the policy that ranks
and explains actions (:mod:`policy.ranking`), consent-aware in-memory state
(:mod:`serving.state`), and the online stores (:mod:`serving.feedback`, :mod:`serving.audit`).

Loads and scores champions through :mod:`training.registry` and :mod:`training.scoring`
only; never imports the training pipeline (checked by import-linter).
"""
