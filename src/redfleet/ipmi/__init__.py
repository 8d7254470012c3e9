"""IPMI fallback (pyghmi) for BMCs without Redfish: power and sensors."""

from __future__ import annotations

from redfleet.ipmi.client import IpmiClient

__all__ = ["IpmiClient"]
