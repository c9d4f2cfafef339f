"""The one thing pyproject.toml cannot say: the access log's optional C accelerator.

``optional=True``: where no C compiler (or no Python headers) is found, the package installs
without ``launcher._speedups`` and ``launcher.observability.access_log`` formats every line in Python.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("launcher._speedups", ["launcher/_speedups.c"], optional=True)])
