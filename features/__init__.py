"""Point-in-time feature pipelines (built in a later issue)."""
