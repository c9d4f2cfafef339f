"""Hypercorn backend (work in progress)."""
