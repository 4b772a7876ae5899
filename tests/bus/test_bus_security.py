"""Who may configure: parameter sets over the bus restricted to users the transport authenticated."""

from __future__ import annotations

import pytest
from tests_helpers import free_port

from tether import settings as settings_mod
from tether.bus import Context, Node, get_srv_type, get_type, spin_in_background
from tether.bus.parameters import to_parameter_value
from tether.bus.router import Router
from tether.bus.security import SecurityError, router_access_control
from tether.bus.transport.zenoh import ZenohTransport, open_session
from tether.settings import Settings


def _ctx(endpoint: str, user: str, password: str) -> Context:
    auth = {"transport/auth/usrpwd/user": user, "transport/auth/usrpwd/password": password}
    session, mode = open_session([endpoint], allow_peer=False, auth=auth)
    assert mode == "client"
    return Context(ZenohTransport(session, mode))


def _set_rate(ctx: Context, value: float):
    caller = Node("caller", context=ctx, enable_telemetry=False, start_parameter_services=False)
    try:
        st = get_srv_type("rcl_interfaces/srv/SetParameters")
        P = get_type("rcl_interfaces/msg/Parameter")
        client = caller.create_client(st, "/robot/planner/set_parameters")
        return client.call(st.Request(parameters=[P(name="rate", value=to_parameter_value(value))]), 2.0)
    finally:
        caller.destroy_node()


def test_only_allowed_senders_may_set_parameters(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("configbot:s3cret\nviewer:v13wer\n")
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    s = Settings(
        listen=(endpoint,), connect=(endpoint,), users_file=users, allowed_configurers=("configbot",)
    )
    old = settings_mod._current
    settings_mod._current = s
    contexts: list[Context] = []
    try:
        with Router.from_settings() as router:
            assert router.hosted
            owner = _ctx(endpoint, "configbot", "s3cret")
            contexts.append(owner)
            planner = Node("planner", namespace="/robot", context=owner)
            planner.declare_parameter("rate", 10.0, min=1.0, max=100.0)
            spinner = spin_in_background(planner)
            try:
                configbot = _ctx(endpoint, "configbot", "s3cret")
                viewer = _ctx(endpoint, "viewer", "v13wer")
                contexts += [configbot, viewer]
                assert _set_rate(configbot, 20.0).results[0].successful
                assert planner.get_parameter("rate").value == 20.0
                from tether.bus import ServiceCallError

                with pytest.raises(ServiceCallError):
                    _set_rate(viewer, 50.0)  # the router drops the query: the viewer is not allowed
                assert planner.get_parameter("rate").value == 20.0
                with pytest.raises(Exception, match="Unable to connect"):
                    _ctx(endpoint, "intruder", "guess")  # unknown users cannot join at all
            finally:
                spinner.stop()
                planner.destroy_node()
    finally:
        for c in contexts:
            c.shutdown()
        settings_mod._current = old


def test_restriction_without_users_is_a_clear_error(tmp_path):
    with pytest.raises(SecurityError, match="needs TETHER_USERS_FILE"):
        router_access_control(Settings(allowed_configurers=("configbot",)))
    users = tmp_path / "u.txt"
    users.write_text("a:b\n")
    with pytest.raises(SecurityError, match="not users of"):
        router_access_control(Settings(allowed_configurers=("configbot",), users_file=users))
    users.write_text("broken line\n")
    with pytest.raises(SecurityError, match=r"u.txt:1"):
        router_access_control(Settings(allowed_configurers=("a",), users_file=users))
    assert router_access_control(Settings()) == {}  # the open loopback default
