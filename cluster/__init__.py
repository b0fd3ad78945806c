"""natal's control plane: config, Ray runtime, CLI, job submission, the lifecycle run."""
