"""Experiment tools: each runs as `python -m experiments.NAME` from the repository root (see the README,
"Experiments behind the defaults"); one-off measurements are under `experiments/archive/`."""
