"""A simulated CDP world with known truth (``nextbest generate``)."""
