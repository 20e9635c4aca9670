"""Adapters that convert published benchmark tables to the tarch meta-dataset format."""
