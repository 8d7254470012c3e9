"""Where redfleet finds the reference data kept beside the repository (``../shared``)."""

from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path:
    """The ``shared/`` folder: ``$REDFLEET_SHARED`` or ``../shared`` beside the checkout.

    The data there (real Redfish captures, schemas, profiles, the Xid catalog, SSD data) is not copied into the
    package; callers that need it raise or skip with a clear message when it is absent.
    """
    env = os.environ.get("REDFLEET_SHARED")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared"
        if (parent / "pyproject.toml").exists() and candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared"


def mockups_dir() -> Path:
    return shared_dir() / "redfish" / "mockups"
