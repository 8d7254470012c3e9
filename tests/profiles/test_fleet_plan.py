"""Fleet mode (``--fast``) gives the same rows as full reads, on every simulated flavor.

In fleet mode the first BMC of each platform is read in full and the others read only what it needed (plus any
URI it never had). Two simulated nodes per Redfish flavor: the second node of each flavor, validated in fleet mode,
must give the same rows — same verdict, same value found — as the same node read in full, while reading fewer
resources.
"""

from __future__ import annotations

import pytest

from redfleet.profiles.engine import Options
from redfleet.profiles.fleet import Target, fleet_options, validate_fleet
from redfleet.profiles.profile import load_profile

pytestmark = pytest.mark.slow  # ~15 s of CPU: six flavors, the DGX tree alone is ~4,500 resources


def _rows(result):
    return {(r.uri, r.prop): (r.verdict.label, r.found) for r in result.rows}


async def test_fleet_mode_equals_full_reads_on_every_flavor(ocp_profiles, tmp_path):
    from redfleet.sim import SimConfig, SimFleet
    from redfleet.sim.flavors import REDFISH_FLAVORS

    mix = dict.fromkeys(REDFISH_FLAVORS, 2)
    cfg = SimConfig(nodes=sum(mix.values()), mix=mix, port=0, http=True, base_address="127.16.132.1",
                    dynamics=False, cache_dir=tmp_path)
    profiles = load_profile(ocp_profiles / "OCPServerHardwareManagement.v1_1_0.json")
    async with SimFleet(cfg) as fleet:
        targets = [Target(n.name, n.bmc_url, "root", "calvin", {"flavor": n.flavor}) for n in fleet.nodes]
        fast = await validate_fleet(targets, profiles, fleet_options(), protocol=False)
        followers = [i for i, t in enumerate(targets) if any(u.tags == t.tags for u in targets[:i])]
        full = await validate_fleet([targets[i] for i in followers], profiles, Options(), protocol=False)
    assert sorted(targets[i].tags["flavor"] for i in followers) == sorted(REDFISH_FLAVORS)
    assert [r.error for r in fast] == [None] * len(targets)
    for i, ref in zip(followers, full, strict=True):
        flavor = targets[i].tags["flavor"]
        ours = fast[i]
        assert ref.error is None, (flavor, ref.error)
        want, got = _rows(ref), _rows(ours)
        differ = sorted(((k, want.get(k), got.get(k)) for k in set(want) | set(got) if want.get(k) != got.get(k)),
                        key=str)
        assert differ == [], f"{flavor}: fleet mode differs from a full read on {len(differ)} rows: {differ[:5]}"
        assert ours.summary() == ref.summary(), flavor
        assert ours.resources_read < ref.resources_read / 2, (flavor, ours.resources_read, ref.resources_read)
