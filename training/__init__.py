"""Model training and registration (built in a later issue)."""
