"""The measuring code: executed FLOPs, timing, the compute-budget fit and the static reference a
sparse run is timed against (docs/DESIGN.md, "Layout")."""
