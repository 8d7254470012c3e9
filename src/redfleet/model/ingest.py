"""The in-band ingest protocol: what ``redfleet agent`` (and the simulator, for its simulated nodes) POSTs to
``redfleet serve`` at ``POST /api/v1/ingest`` with ``Authorization: Bearer <per-node agent token>``.

One batch per push (the agent pushes every second by default). Metric names are DCGM field names for GPU
metrics (``DCGM_FI_DEV_GPU_TEMP``...), so a dcgm-exporter scrape and NVML readings land on the same names;
redfleet's own in-band metrics use a ``REDFLEET_`` prefix. Events carry what is not a number: Xid lines, kernel
messages. NVMe health rides along as nvme-cli JSON (the predict package decodes it).

Remediation commands ride back in the answer (``IngestResult.commands``: "reset GPU N", "reboot the OS", see
:mod:`redfleet.remediation.commands`) and their results in the node's next batch (``command_results``). Both fields
default to empty, so an agent that knows nothing of commands and a serve that sends none still speak to each other.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1

OsState = Literal["up", "booting", "hung", "down"]


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str = Field(min_length=1, max_length=128)  # DCGM field name or REDFLEET_* name
    value: float
    ts: float  # seconds since the epoch, when measured
    gpu: int | None = None  # GPU index on the node, when per-GPU
    labels: dict[str, str] = Field(default_factory=dict)  # e.g. {"nvlink": "3"}, {"device": "nvme0"}


class InbandEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ts: float
    kind: Literal["xid", "kernel", "agent"] = "xid"
    gpu: int | None = None
    pci_bus_id: str | None = None  # "0000:3a:00.0" as NVRM prints it
    code: int | None = None  # the Xid number
    message: str = ""
    raw: str | None = None  # the original line


class NvmeReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str
    serial: str | None = None
    model: str | None = None
    firmware: str | None = None
    smart: dict[str, Any] | None = None  # nvme-cli `smart-log -o json`
    ocp_c0h: dict[str, Any] | None = None  # nvme-cli `ocp smart-add-log -o json`
    raw: dict[str, str] | None = None  # {"smart_02h": hex, "ocp_c0h": hex}


class GpuIdentity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gpu: int
    uuid: str | None = None
    pci_bus_id: str | None = None
    model: str | None = None
    serial: str | None = None


class CommandResult(BaseModel):
    """What the agent did with one command from an earlier ingest answer."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128)  # the command's id, as serve sent it
    ok: bool
    message: str = Field(default="", max_length=4000)  # e.g. nvidia-smi's own words when the reset failed
    finished_at: float  # seconds since the epoch, when the agent finished (or refused) it


class IngestBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protocol: int = PROTOCOL_VERSION
    node: str = Field(min_length=1)
    sent_at: float
    agent: str = "redfleet-agent"  # agent name/version, "redfleet-sim" for the simulator
    source: Literal["nvml", "dcgm-exporter", "sim", "mixed"] = "nvml"
    os_state: OsState = "up"
    uptime_s: float | None = None
    driver_version: str | None = None
    gpus: list[GpuIdentity] = Field(default_factory=list)
    gpus_expected: int | None = None  # GPUs the node should have (a GPU that fell off the bus is missing)
    samples: list[Sample] = Field(default_factory=list, max_length=100_000)
    events: list[InbandEvent] = Field(default_factory=list, max_length=10_000)
    nvme: list[NvmeReport] = Field(default_factory=list, max_length=64)
    command_results: list[CommandResult] = Field(default_factory=list, max_length=100)


class IngestResult(BaseModel):
    accepted_samples: int
    accepted_events: int
    node: str
    commands: list[dict[str, Any]] = Field(default_factory=list)  # AgentCommand.to_wire() for this node
