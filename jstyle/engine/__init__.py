"""The optimisation engine: options, the optax loop, compiled programs, checkpoints, the run
session."""
