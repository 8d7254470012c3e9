"""Redfish client tests: make the helper modules beside this file importable (rf_helpers, mockup_oracle)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
