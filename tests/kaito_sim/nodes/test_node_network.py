"""Simulated nodes' pod CIDRs and addresses stay distinct past 256 nodes (a 1,000-workspace cluster)."""

from __future__ import annotations

import ipaddress

from kaito_sim.nodes.kubelet import _FALLBACK_POD_CIDR, MAX_NODES, _cidr_index, _node, _pod_cidr
from kaito_sim.nodes.nodespec import NodeSpec


def test_every_node_index_has_its_own_pod_cidr_and_address_and_maps_back() -> None:
    cidrs, addresses = set(), set()
    for index in range(MAX_NODES):
        node, status = _node(NodeSpec(name=f"n-{index}"), index)
        cidr = node["spec"]["podCIDR"]
        assert ipaddress.ip_network(cidr).prefixlen == 24
        assert _cidr_index(cidr) == index
        cidrs.add(cidr)
        addresses.add(ipaddress.ip_address(status["addresses"][0]["address"]))
    assert len(cidrs) == len(addresses) == MAX_NODES
    assert _pod_cidr(255) == _FALLBACK_POD_CIDR  # the one index a new node never takes


def test_foreign_pod_cidrs_belong_to_no_index() -> None:
    assert [_cidr_index(c) for c in ("", "192.168.1.0/24", "10.243.0.0/24", "10.248.0.0/24")] == [None] * 4
