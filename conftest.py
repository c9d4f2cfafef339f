"""The whole suite's setup: one name for the run, Hypothesis's profiles, the image tests last,
and what the run left in the Docker engine removed at its end.

Under pytest-xdist this file is imported in the controller first, then in each worker; the
workers inherit the controller's environment, so all of them share the run's name.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent
#: Names the test run (its images, containers and lock; see tests/image/imagekit.py).
RUN_VARIABLE = "ASGI_LAUNCHER_TEST_RUN"

# Hypothesis: no per-example deadline anywhere (a loaded machine is slow, not wrong). "dev" and
# "ci" search as deep as a property needs to be worth running on every change; "thorough" goes
# further, for a change to the code a property covers: pytest --hypothesis-profile=thorough.
settings.register_profile("dev", deadline=None, max_examples=100)
settings.register_profile("ci", deadline=None, max_examples=100, print_blob=True)
settings.register_profile("thorough", deadline=None, max_examples=1500)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

# Set on import, before any other conftest (tests/image's imports imagekit, which reads it); the
# xdist workers inherit it from the controller's environment. Whoever names the run removes what
# it made: this session if it named it here, else whoever did (.ci/run; or the session around a
# pytest run inside a test, which must not remove its images and containers while they are used).
OWNS_THE_RUN = not os.environ.get(RUN_VARIABLE)
if OWNS_THE_RUN:
    os.environ[RUN_VARIABLE] = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _controller(config: pytest.Config) -> bool:
    """True in the process that runs the session (not an xdist worker)."""
    return not hasattr(config, "workerinput")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The image tests last (stable order otherwise): the image builds meanwhile, and the
    tests that need no engine do not wait for it."""
    items.sort(key=lambda item: item.get_closest_marker("image") is not None)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove the run's containers and images once every worker is done with them, if this
    session named the run."""
    if not (OWNS_THE_RUN and _controller(session.config)):
        return
    imagekit = sys.modules.get("imagekit")  # (tests/image/conftest.py's, without xdist)
    if imagekit is None:
        spec = importlib.util.spec_from_file_location("imagekit", ROOT / "tests" / "image" / "imagekit.py")
        assert spec is not None and spec.loader is not None
        imagekit = importlib.util.module_from_spec(spec)
        sys.modules["imagekit"] = imagekit
        spec.loader.exec_module(imagekit)
    imagekit.clean()
