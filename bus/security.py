"""Who may configure: parameter sets restricted to allowed senders, with identity from the transport.

Trust model of the default (loopback, no users file): anyone who can open a TCP connection to
127.0.0.1:7447 (any process of any user on this machine) is on the bus and may set parameters;
nothing listens beyond loopback unless TETHER_LISTEN says so.

Restricted: the router gets a user dictionary (TETHER_USERS_FILE, `user:password` lines; Zenoh's
usrpwd authentication, so a process without valid credentials cannot join at all) and
TETHER_ALLOWED_CONFIGURERS names the users who may set parameters. The router's access control
then denies `set_parameters` / `set_parameters_atomically` queries from every other user. The
identity is the one the transport authenticated, never a field in the payload. Across hosts, put
TLS in a Zenoh config file (TETHER_ZENOH_CONFIG) so the credentials travel encrypted; Zenoh's ACL
can also match TLS certificate common names there.
"""

from __future__ import annotations

from pathlib import Path

from tether.settings import Settings

__all__ = ["SecurityError", "client_auth", "read_users", "router_access_control"]

PARAMETER_SET_KEYS = ["**/set_parameters", "**/set_parameters_atomically"]


class SecurityError(ValueError):
    """The security settings contradict each other; the message says which and the fix."""


def read_users(path: Path) -> list[str]:
    users = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise SecurityError(f"{path}:{lineno}: each line is user:password, but got {line!r}")
        users.append(user)
    return users


def router_access_control(s: Settings) -> dict:
    """Zenoh config entries for a router hosting the bus under these settings ({} = the open default)."""
    extra: dict = {}
    if s.users_file is not None:
        extra["transport/auth/usrpwd/dictionary_file"] = str(s.users_file)
    if not s.allowed_configurers:
        return extra
    if s.users_file is None:
        raise SecurityError(
            "TETHER_ALLOWED_CONFIGURERS restricts parameter sets to authenticated users, so the router "
            "needs TETHER_USERS_FILE (user:password lines) to authenticate them"
        )
    users = read_users(s.users_file)
    unknown = sorted(set(s.allowed_configurers) - set(users))
    if unknown:
        raise SecurityError(
            f"allowed configurers {unknown} are not users of {s.users_file}; add them there or fix the names"
        )
    others = [u for u in users if u not in s.allowed_configurers]
    if not others:
        return extra
    extra["access_control"] = {
        "enabled": True,
        "default_permission": "allow",
        "rules": [
            {
                "id": "no_parameter_sets",
                "permission": "deny",
                "flows": ["ingress", "egress"],
                "messages": ["query"],
                "key_exprs": PARAMETER_SET_KEYS,
            }
        ],
        "subjects": [{"id": "not_configurers", "usernames": others}],
        "policies": [{"rules": ["no_parameter_sets"], "subjects": ["not_configurers"]}],
    }
    return extra


def client_auth(s: Settings) -> dict:
    """Zenoh config entries carrying this process's credentials, if it has any."""
    if not s.user:
        return {}
    return {"transport/auth/usrpwd/user": s.user, "transport/auth/usrpwd/password": s.password}
