"""Predictive failure engine for datacenter NVMe SSDs: decode NVMe SMART (02h) and OCP C0h health logs (raw or
as nvme-cli / smartctl JSON), keep each drive's history, score risk from levels and trends, rank the fleet.

Stable entry points (see ``.notes/ssd-contract.md``):

* decoding: :func:`decode_raw`, :func:`decode_smart`, :func:`decode_ocp_c0`, :func:`parse_document`,
  :func:`load_path`; errors are :class:`LogFormatError`;
* building logs: :func:`encode_smart`, :func:`encode_ocp_c0`, :func:`nvme_cli_smart_log`,
  :func:`nvme_cli_ocp_c0`, :func:`smartctl_json`;
* degradation model for the simulator: :class:`DriveModel`;
* scoring: :func:`score_history`, :func:`rank_fleet`, :class:`Thresholds`.
"""

from __future__ import annotations

from redfleet.predict.jsonfmt import (
    nvme_cli_ocp_c0,
    nvme_cli_smart_log,
    parse_document,
    smartctl_json,
)
from redfleet.predict.layout import (
    OCP_C0_FIELDS,
    OCP_C0_GUID_BYTES,
    OCP_C0_GUID_TEXT,
    OCP_LATEST_VERSION,
    OCP_VERSION_SPEC,
    OCP_VERSIONS,
    SMART_FIELDS,
)
from redfleet.predict.logs import (
    DecodedLog,
    LogFormatError,
    decode_ocp_c0,
    decode_raw,
    decode_smart,
    encode_ocp_c0,
    encode_smart,
)
from redfleet.predict.model import PATHS, DriveModel, DriveSpec, DriveState

__all__ = [
    "OCP_C0_FIELDS",
    "OCP_C0_GUID_BYTES",
    "OCP_C0_GUID_TEXT",
    "OCP_LATEST_VERSION",
    "OCP_VERSIONS",
    "OCP_VERSION_SPEC",
    "PATHS",
    "SMART_FIELDS",
    "DecodedLog",
    "DriveModel",
    "DriveSpec",
    "DriveState",
    "LogFormatError",
    "decode_ocp_c0",
    "decode_raw",
    "decode_smart",
    "encode_ocp_c0",
    "encode_smart",
    "nvme_cli_ocp_c0",
    "nvme_cli_smart_log",
    "parse_document",
    "smartctl_json",
]
