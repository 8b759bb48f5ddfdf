"""Surplus: the command line and the operations around the pipeline (local broker, store, demo)."""

__version__ = "0.1.0"
