"""The REST door: the BentoML service (:mod:`serving.http.service`) around a FastAPI app of
routes (:mod:`serving.http.api`), its problem details (:mod:`serving.http.problems`), the
committed OpenAPI document (:mod:`serving.http.openapi`) and the traffic limits
(:mod:`serving.http.traffic`)."""
