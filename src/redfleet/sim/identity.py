"""Per-node identity: serials, UUIDs, MACs and host names derived from (seed, node index, template value).

The template keeps the captured values; a node's value is computed when a response is built, so nothing per node
is stored. The mapping keeps the value's shape (length, digit/letter classes, hex-ness, separators, the ``0x``
prefix and a MAC's vendor OUI) so that parsers which check formats keep working, and it is case-insensitive (the
same MAC written ``7C:C2:…`` and ``7c:c2:…`` maps to the same address in the matching case).
"""

from __future__ import annotations

import functools
import hashlib
import re
import string

# Keys whose string values identify one machine.
IDENTITY_KEYS = frozenset(
    {
        "SerialNumber",
        "UUID",
        "ServiceTag",
        "ChassisServiceTag",
        "NodeID",
        "ExpressServiceCode",
        "BoardSerialNumber",
        "MACAddress",
        "PermanentMACAddress",
        "AssetTag",
        "SKU",
        "WWN",
        "WWNN",
        "WWPN",
        "DurableName",
    }
)
HOST_KEYS = frozenset({"HostName", "FQDN"})

_HEXISH = re.compile(r"^(0x)?[0-9A-Fa-f][0-9A-Fa-f:.\-]*$")
_MAC = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")
_DIGITS = string.digits
_UPPER = string.ascii_uppercase
_LOWER = string.ascii_lowercase
_HEX_UP = "0123456789ABCDEF"
_HEX_LO = "0123456789abcdef"


def is_identity_value(key: str, value: object) -> bool:
    """Whether ``value`` under ``key`` is worth varying per node (not a placeholder or prose)."""
    if not isinstance(value, str) or len(value) < 4 or len(value) > 64 or " " in value:
        return False
    if key in HOST_KEYS:
        return len(value) >= 3
    if key not in IDENTITY_KEYS:
        return False
    if not any(c.isdigit() for c in value):
        return False
    core = value[2:] if value.lower().startswith("0x") else value
    stripped = core.replace(":", "").replace("-", "").replace(".", "")
    return len(set(stripped.lower())) > 1  # 0000…, FFFF… are placeholders


@functools.lru_cache(maxsize=1 << 16)
def derive(seed: int, index: int, value: str) -> str:
    """The node's version of a template identity value (same shape, deterministic)."""
    digest = hashlib.blake2b(f"{seed}:{index}:{value.upper()}".encode(), digest_size=64).digest()
    stream = digest * (1 + len(value) // 64)
    hexish = bool(_HEXISH.match(value))
    start = 2 if value.lower().startswith("0x") else 0
    if _MAC.match(value):
        start = 9  # keep the vendor OUI
    hex_digits = _HEX_LO if any(x in "abcdef" for x in value) else _HEX_UP  # digits follow the letters' case
    out = list(value)
    for i in range(start, len(value)):
        c = value[i]
        b = stream[i]
        if c in _DIGITS:
            out[i] = hex_digits[b % 16] if hexish else _DIGITS[b % 10]
        elif hexish and c in _HEX_UP:
            out[i] = _HEX_UP[b % 16]
        elif hexish and c in _HEX_LO:
            out[i] = _HEX_LO[b % 16]
        elif c in _UPPER:
            out[i] = _UPPER[b % 26]
        elif c in _LOWER:
            out[i] = _LOWER[b % 26]
    return "".join(out)


def derive_host(node_name: str, value: str, bmc: bool) -> str:
    """A host name or FQDN for the node: ``node-00001`` (OS) or ``node-00001-bmc``; an FQDN keeps its domain."""
    base = f"{node_name}-bmc" if bmc else node_name
    if "." in value:
        return base + value[value.index(".") :]
    return base
