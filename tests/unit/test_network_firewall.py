"""The firewall's nftables commands as data: what the table holds and how a
bridge joins and leaves it. No nftables is touched."""

from __future__ import annotations

import json

from overlayctl.network import firewall


def test_the_table_isolates_our_bridges_and_nothing_else():
    commands = firewall.table_commands()
    tables = [c["add"]["table"] for c in commands if "table" in c["add"]]
    assert tables == [{"family": "inet", "name": "overlayctl"}]
    # Every object is in our own table: nothing names another.
    for command in commands:
        (obj,) = command["add"].values()
        assert obj.get("table", obj.get("name")) == "overlayctl" and obj["family"] == "inet"
    (chain,) = [c["add"]["chain"] for c in commands if "chain" in c["add"]]
    assert (chain["hook"], chain["policy"], chain["type"]) == ("forward", "accept", "filter")
    rules = [json.dumps(c["add"]["rule"]["expr"]) for c in commands if "rule" in c["add"]]
    # Same bridge in and out first (accepted by this chain only), then ours to ours dropped.
    assert len(rules) == 2
    assert '"right": "@same"' in rules[0] and '"accept"' in rules[0]
    assert rules[1].count('"right": "@bridges"') == 2 and '"drop"' in rules[1]


def test_a_bridge_is_two_elements_keyed_by_its_name():
    added = firewall.element_commands("add", ["br-1", "octl0"])
    assert added == [
        {"add": {"element": {"family": "inet", "table": "overlayctl", "name": "bridges", "elem": ["br-1", "octl0"]}}},
        {
            "add": {
                "element": {
                    "family": "inet",
                    "table": "overlayctl",
                    "name": "same",
                    "elem": [{"concat": ["br-1", "br-1"]}, {"concat": ["octl0", "octl0"]}],
                }
            }
        },
    ]
    assert [next(iter(c)) for c in firewall.element_commands("delete", ["br-1"])] == ["delete", "delete"]
