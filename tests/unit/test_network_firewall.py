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


def test_the_way_out_is_a_nat_chain_and_two_sets_in_our_table():
    commands = firewall.outbound_commands()
    for command in commands:
        (obj,) = command["add"].values()
        assert obj.get("table") == "overlayctl" and obj["family"] == "inet"
    sets = {c["add"]["set"]["name"]: c["add"]["set"] for c in commands if "set" in c["add"]}
    assert sets["outbound"]["type"] == ["ipv4_addr", "ifname"] and sets["outbound"]["flags"] == ["interval"]
    assert sets["internal"]["type"] == "ifname"
    (chain,) = [c["add"]["chain"] for c in commands if "chain" in c["add"]]
    assert (chain["type"], chain["hook"], chain["prio"]) == ("nat", "postrouting", 100)
    rules = [(c["add"]["rule"]["chain"], json.dumps(c["add"]["rule"]["expr"])) for c in commands if "rule" in c["add"]]
    # Out of its own bridge: left alone; out of anything else: masqueraded.
    assert rules[0][0] == "postrouting" and '"oifname"' in rules[0][1] and '"return"' in rules[0][1]
    assert rules[1][0] == "postrouting" and '"iifname"' in rules[1][1] and '"masquerade"' in rules[1][1]
    assert [chain for chain, _ in rules[2:]] == ["forward", "forward"]
    assert all('"@internal"' in expr and '"drop"' in expr for _, expr in rules[2:])


def test_a_network_gets_a_way_out_or_none():
    out = firewall.way_out_commands("add", "br-1", "10.7.0.0/24", internal=False)
    assert out == [
        {
            "add": {
                "element": {
                    "family": "inet",
                    "table": "overlayctl",
                    "name": "outbound",
                    "elem": [{"concat": [{"prefix": {"addr": "10.7.0.0", "len": 24}}, "br-1"]}],
                }
            }
        }
    ]
    walled = firewall.way_out_commands("delete", "br-2", "10.8.0.0/24", internal=True)
    assert walled == [
        {"delete": {"element": {"family": "inet", "table": "overlayctl", "name": "internal", "elem": ["br-2"]}}}
    ]


class _FakeNft:
    """Answers a `list chain` the way libnftables does."""

    def __init__(self, rc: int, policy: str = "") -> None:
        self.rc = rc
        self.policy = policy
        self.asked: list[dict] = []

    def json_cmd(self, command: dict):
        self.asked.append(command)
        chain = {"family": "ip", "table": "filter", "name": "FORWARD", "policy": self.policy}
        return self.rc, {"nftables": [{"metainfo": {}}, {"chain": chain}]}, ""


def test_a_forward_policy_of_drop_in_iptables_is_noticed():
    assert firewall.iptables_forward_drops(_FakeNft(0, "drop"))
    assert not firewall.iptables_forward_drops(_FakeNft(0, "accept"))
    fake = _FakeNft(1)  # no ip filter table: nothing of iptables on the host
    assert not firewall.iptables_forward_drops(fake)
    (command,) = fake.asked[0]["nftables"]
    assert command == {"list": {"chain": {"family": "ip", "table": "filter", "name": "FORWARD"}}}
    warning = firewall.forward_drop_warning("br-1")
    assert "iptables -I DOCKER-USER -i br-1 -o UPLINK -j ACCEPT" in warning and "\n" not in warning
