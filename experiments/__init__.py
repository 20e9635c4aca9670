"""Experiment binaries (absl flags + ml_collections configs) built on the tarch library."""
