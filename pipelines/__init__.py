"""Ray Data and Ray Train programs, one module per stage, plus the pure functions they run."""
