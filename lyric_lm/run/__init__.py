"""Run safety: run dirs, resume, atomic and step-interval checkpoints, exact-resume state, signals, manifest, sweeps."""
