"""Conformance kit for backend plugins (see docs/plugins.md)."""
