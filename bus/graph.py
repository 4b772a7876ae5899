"""The bus graph: who is on it. Each node, publisher, subscription and service holds a liveliness token.

Keys (an '@' chunk is matched only verbatim, so `**` subscriptions never see them):
`@tether/node/<node>/<pid>`, `@tether/pub/<topic>/<type>/<node>`, `@tether/sub/...`, `@tether/srv/...`,
where each name has its slashes written as '%' and its '*' as '~'.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GraphEntry", "GRAPH_ROOT", "entity_key", "node_key", "parse_key"]

GRAPH_ROOT = "@tether"


def _esc(name: str) -> str:
    # '*' is a wildcard in keys, so a wildcard subscription's name is written with '~' instead.
    return name.replace("/", "%").replace("*", "~") or "%"


def _unesc(chunk: str) -> str:
    return chunk.replace("%", "/").replace("~", "*")


def node_key(node_fqn: str, pid: int, identity: str) -> str:
    return f"{GRAPH_ROOT}/node/{_esc(node_fqn)}/{pid}/{identity}"


def entity_key(kind: str, name: str, type_name: str, node_fqn: str) -> str:
    if kind not in ("pub", "sub", "srv"):
        raise ValueError(f"graph kind must be pub, sub or srv, but got {kind!r}")
    return f"{GRAPH_ROOT}/{kind}/{_esc(name)}/{_esc(type_name)}/{_esc(node_fqn)}"


@dataclass(frozen=True)
class GraphEntry:
    kind: str
    name: str  # node fqn for kind 'node', else the topic or service
    type_name: str = ""
    node: str = ""
    pid: int = 0


def parse_key(key: str) -> GraphEntry | None:
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != GRAPH_ROOT:
        return None
    if parts[1] == "node" and len(parts) >= 4:
        return GraphEntry("node", _unesc(parts[2]), pid=int(parts[3]))
    if parts[1] in ("pub", "sub", "srv") and len(parts) == 5:
        return GraphEntry(parts[1], _unesc(parts[2]), _unesc(parts[3]), _unesc(parts[4]))
    return None
