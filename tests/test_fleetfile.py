from __future__ import annotations

import pytest

from redfleet.model.fleetfile import FleetFileError, parse_fleet_csv, parse_fleet_yaml


def test_yaml_round_trip():
    text = """
credentials:
  sim: {username: root, password: calvin}
nodes:
  - {name: n1, bmc_url: "https://127.1.0.1:8443/", credential: sim, rack: r1, position: 1}
"""
    fleet = parse_fleet_yaml(text)
    assert fleet.nodes[0].bmc_url == "https://127.1.0.1:8443"
    assert fleet.credential_for(fleet.nodes[0]).resolve_password() == "calvin"
    again = parse_fleet_yaml(fleet.to_yaml())
    assert again == fleet


def test_unknown_credential_is_named():
    with pytest.raises(FleetFileError, match="unknown credential 'nope'"):
        parse_fleet_yaml("nodes: [{name: a, bmc_url: 'https://x', credential: nope}]")


def test_bad_url_names_the_node():
    with pytest.raises(FleetFileError, match=r"node #2 \(b\)\.bmc_url"):
        parse_fleet_yaml("nodes: [{name: a, bmc_url: 'https://x'}, {name: b, bmc_url: 'ftp://y'}]")


def test_duplicate_names_rejected():
    with pytest.raises(FleetFileError, match="appears twice"):
        parse_fleet_yaml("nodes: [{name: a, bmc_url: 'https://x'}, {name: a, bmc_url: 'https://y'}]")


def test_csv_tags():
    fleet = parse_fleet_csv("name,bmc_url,rack,tags\nn1,ipmi://127.1.0.9,r2,gpu;h100\n")
    assert fleet.nodes[0].tags == ["gpu", "h100"]
    assert fleet.nodes[0].rack == "r2"


def test_password_env_missing(monkeypatch):
    monkeypatch.delenv("RF_TEST_PW", raising=False)
    fleet = parse_fleet_yaml(
        "credentials: {c: {username: u, password_env: RF_TEST_PW}}\n"
        "nodes: [{name: a, bmc_url: 'https://x', credential: c}]"
    )
    with pytest.raises(FleetFileError, match="RF_TEST_PW"):
        fleet.credential_for(fleet.nodes[0]).resolve_password()
