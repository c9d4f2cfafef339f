"""Granian backend (work in progress)."""
