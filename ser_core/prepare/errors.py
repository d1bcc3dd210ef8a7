"""The error preparation raises when it cannot produce a usable corpus.

A module of its own so every step (checking the output directory, the pipeline) raises the same
class without importing one another.
"""
from __future__ import annotations


class PrepareError(RuntimeError):
    """Preparation cannot produce a usable corpus (no clip survived, output in the way)."""
