"""The fleet file: the list of nodes and how to reach their BMCs.

Written by ``redfleet sim`` and by operators; read by ``redfleet fleet import``, ``inventory --fleet`` and
``validate --fleet``. YAML (or CSV with the node columns). Credentials are referenced by name so that one
secret serves many nodes and passwords need not sit beside every row; a credential gives the password inline
(simulators, labs), from an environment variable, or from a file.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

FLEET_FILE_VERSION = 1


class FleetFileError(ValueError):
    """A fleet file that cannot be used; the message names the file, the row and what is wrong."""


class Credential(BaseModel):
    username: str
    password: str | None = None
    password_env: str | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Credential:
        sources = [s for s in (self.password, self.password_env, self.password_file) if s is not None]
        if len(sources) != 1:
            raise ValueError("give exactly one of password, password_env, password_file")
        return self

    def resolve_password(self) -> str:
        if self.password is not None:
            return self.password
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise FleetFileError(f"environment variable {self.password_env} is not set")
            return value
        assert self.password_file is not None
        try:
            return Path(self.password_file).read_text().strip()
        except OSError as exc:
            raise FleetFileError(f"cannot read password file {self.password_file}: {exc}") from exc


class FleetNode(BaseModel):
    name: str = Field(min_length=1)
    bmc_url: str = Field(min_length=1)
    credential: str | None = None
    flavor: str | None = None
    rack: str | None = None
    position: int | None = None
    tags: list[str] = Field(default_factory=list)
    # Address of the node's own OS (in-band agent, dcgm-exporter); the simulator fills it in.
    host_address: str | None = None
    # "sha256:<hex>" of the BMC's certificate, when known in advance (pinning without trust-on-first-use).
    tls_fingerprint: str | None = None

    @field_validator("bmc_url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("https://", "http://", "ipmi://")):
            raise ValueError(f"bmc_url {value!r} must start with https://, http:// or ipmi://")
        return value.rstrip("/")


class FleetFile(BaseModel):
    version: int = FLEET_FILE_VERSION
    credentials: dict[str, Credential] = Field(default_factory=dict)
    nodes: list[FleetNode] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> FleetFile:
        seen: set[str] = set()
        for node in self.nodes:
            if node.name in seen:
                raise ValueError(f"node name {node.name!r} appears twice")
            seen.add(node.name)
            if node.credential is not None and node.credential not in self.credentials:
                raise ValueError(f"node {node.name!r} references unknown credential {node.credential!r}")
        return self

    def credential_for(self, node: FleetNode) -> Credential | None:
        return self.credentials.get(node.credential) if node.credential else None

    def to_yaml(self) -> str:
        data = self.model_dump(exclude_none=True, exclude_defaults=False)
        for node in data["nodes"]:
            if not node.get("tags"):
                node.pop("tags", None)
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        return yaml.dump(data, Dumper=dumper, sort_keys=False)


CSV_COLUMNS = ("name", "bmc_url", "credential", "flavor", "rack", "position", "tags", "host_address")


def load_fleet_file(path: str | Path) -> FleetFile:
    """Read a YAML or CSV fleet file; raise FleetFileError naming what is wrong."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise FleetFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".csv":
        return parse_fleet_csv(text, source=str(path))
    return parse_fleet_yaml(text, source=str(path))


def parse_fleet_yaml(text: str, source: str = "<fleet>") -> FleetFile:
    # The C loader, where libyaml is there: a 10,000-node file parses in well under a second instead of ~10 s.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data: Any = yaml.load(text, Loader=loader)  # a safe loader either way
    except yaml.YAMLError as exc:
        raise FleetFileError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if isinstance(data, list):  # a bare list of nodes is accepted too
        data = {"nodes": data}
    if not isinstance(data, dict):
        raise FleetFileError(f"{source}: expected a mapping with 'nodes', got {type(data).__name__}")
    return _validate(data, source)


def parse_fleet_csv(text: str, source: str = "<fleet>") -> FleetFile:
    reader = csv.DictReader(io.StringIO(text))
    missing = {"name", "bmc_url"} - set(reader.fieldnames or [])
    if missing:
        raise FleetFileError(f"{source}: CSV header lacks {', '.join(sorted(missing))}")
    nodes: list[dict[str, Any]] = []
    for row in reader:
        node: dict[str, Any] = {k: v for k, v in row.items() if k in CSV_COLUMNS and v not in (None, "")}
        if "tags" in node:
            node["tags"] = [t for t in str(node["tags"]).replace(";", ",").split(",") if t.strip()]
        nodes.append(node)
    return _validate({"nodes": nodes}, source)


def _validate(data: dict[str, Any], source: str) -> FleetFile:
    try:
        return FleetFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            if err["loc"][:1] == ("nodes",) and len(err["loc"]) > 1 and isinstance(err["loc"][1], int):
                idx = err["loc"][1]
                nodes = data.get("nodes") or []
                name = nodes[idx].get("name") if idx < len(nodes) and isinstance(nodes[idx], dict) else None
                where = f"node #{idx + 1}" + (f" ({name})" if name else "") + "." + ".".join(
                    str(p) for p in err["loc"][2:]
                )
            problems.append(f"{where}: {err['msg']}")
        raise FleetFileError(f"{source}: " + "; ".join(problems)) from exc
