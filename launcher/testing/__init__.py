"""Conformance kit for backend plugins (see README: writing a backend)."""
