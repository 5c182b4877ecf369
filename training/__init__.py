"""Training: time-based training sets and models (churn so far; see the training issue)."""
