"""The Zenoh transport: ROS 2 names as keys, CDR payloads, queryables for services, liveliness for presence.

Session modes: a node joins the router named in settings as a client; when none answers, a
standalone command opens a peer session (and says so). Multicast scouting is always off (it
would send outside the machine); timestamping is on (transient_local caches need it). Large
payloads are written once into shared memory (`SharedMemory`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from pathlib import Path

import zenoh
from zenoh import ext as zext

from tether.bus.names import key_of
from tether.bus.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from tether.bus.transport._base import (
    Closable,
    OnRequest,
    OnSample,
    RawPublisher,
    ServiceCallError,
    Transport,
    TransportError,
)

__all__ = ["SharedMemory", "ZenohTransport", "open_session", "shm_allowed", "zenoh_config"]

log = logging.getLogger("tether.bus")

# Payloads from this size up are asked whether they came through shared memory (never, where
# this zenoh-python build has no shared-memory API).
SHM_READ_MIN = 4096 if hasattr(zenoh.ZBytes, "as_shm") else float("inf")


def zenoh_config(
    mode: str,
    *,
    connect: Iterable[str] = (),
    listen: Iterable[str] = (),
    extra_file: Path | None = None,
    extra: dict | None = None,
) -> zenoh.Config:
    """A Zenoh config with tether's defaults: no multicast scouting, explicit endpoints, timestamps.

    `extra_file` (TETHER_ZENOH_CONFIG) is a user's JSON5 file (TLS, access control, ...); tether's
    defaults are inserted over it only where they concern scouting, mode and endpoints.
    """
    conf = zenoh.Config.from_file(str(extra_file)) if extra_file else zenoh.Config()
    conf.insert_json5("mode", json.dumps(mode))
    conf.insert_json5("scouting/multicast/enabled", "false")
    conf.insert_json5("timestamping/enabled", "true")
    connect, listen = list(connect), list(listen)
    if connect:
        conf.insert_json5("connect/endpoints", json.dumps(connect))
    if listen:
        conf.insert_json5("listen/endpoints", json.dumps(listen))
    elif mode != "router":
        # A client or peer opens no listening socket unless asked: nothing listens by default.
        conf.insert_json5("listen/endpoints", "[]")
    for path, value in (extra or {}).items():
        conf.insert_json5(path, json.dumps(value))
    return conf


def open_session(
    connect: Iterable[str],
    *,
    extra_file: Path | None = None,
    allow_peer: bool = True,
    auth: dict | None = None,
) -> tuple[zenoh.Session, str]:
    """Join a router as a client; with none reachable, a lone peer session (when allowed).

    Returns the session and the mode it got ('client' or 'peer').
    """
    connect = list(connect)
    try:
        conf = zenoh_config(
            "client",
            connect=connect,
            extra_file=extra_file,
            extra={"connect/timeout_ms": 2000, "connect/exit_on_failure": True, **(auth or {})},
        )
        return zenoh.open(conf), "client"
    except zenoh.ZError as exc:
        if not allow_peer:
            raise TransportError(
                f"no Zenoh router answers at {', '.join(connect)} ({exc}); start one with `tether up` "
                "or point TETHER_CONNECT at a running router"
            ) from None
    return zenoh.open(zenoh_config("peer", extra_file=extra_file)), "peer"


def shm_allowed(extra_file: Path | None = None) -> bool:
    """Whether the Zenoh config (tether's defaults under the user's file) leaves shared memory on."""
    try:
        return bool(
            json.loads(
                zenoh_config("client", extra_file=extra_file).get_json("transport/shared_memory/enabled")
            )
        )
    except (zenoh.ZError, ValueError):
        return False


class SharedMemory:
    """Large payloads written once into a Zenoh shared-memory pool, as rmw_zenoh serialises into one.

    Zenoh already carries a payload above its `message_size_threshold` to subscribers on this
    host through shared memory, but from a put of bytes it copies it twice on the way: into a
    buffer of its own, then into its segment. A payload of at least `threshold` bytes is instead
    copied once, into a buffer of this pool, and put as that buffer. A full pool (subscribers
    still hold its buffers) or a host without shared memory falls back to the put of bytes, so
    nothing is lost; `puts` and `fallbacks` count which way messages went. Subscribers on other
    hosts get the bytes as before: Zenoh copies a buffer out for a link without shared memory.
    """

    def __init__(self, threshold: int, pool_bytes: int) -> None:
        self.threshold = threshold
        self.pool_bytes = pool_bytes
        self.puts = 0
        self.fallbacks = 0
        self._provider = None
        self._policy = None
        self._broken = threshold <= 0
        self._lock = threading.Lock()

    def _open(self):
        """The pool, made on the first large message (no segment for a process that sends none)."""
        with self._lock:
            if self._provider is None and not self._broken:
                try:
                    from zenoh import shm  # marked unstable in zenoh-python; absent from some builds

                    self._provider = shm.ShmProvider.default_backend(self.pool_bytes)
                    # Collect buffers subscribers released, then defragment, before giving up.
                    self._policy = shm.Defragment(shm.GarbageCollect())
                except (ImportError, AttributeError, zenoh.ZError) as exc:
                    self._broken = True
                    log.warning("no Zenoh shared memory here (%s): large messages go as bytes", exc)
        return self._provider

    def put(self, pub, payload: bytes | bytearray, attachment: bytes | None) -> bool:
        """Put `payload` as a buffer of the pool; False when it could not (the caller puts bytes)."""
        provider = self._provider or self._open()
        if provider is None:
            return False
        try:
            buf = provider.alloc(len(payload), self._policy)
        except zenoh.ZError:  # the pool is full: subscribers still hold its buffers
            self.fallbacks += 1
            return False
        buf[:] = payload
        pub.put(buf, attachment=attachment)
        self.puts += 1
        return True


class _ZPublisher(RawPublisher):
    def __init__(self, pub, shm: SharedMemory | None = None) -> None:
        self._pub = pub
        self._shm = shm
        self._closed = False

    def put(self, payload: bytes | bytearray, attachment: bytes | None = None) -> None:
        shm = self._shm
        if shm is not None and len(payload) >= shm.threshold and shm.put(self._pub, payload, attachment):
            return
        self._pub.put(payload, attachment=attachment)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._pub.undeclare()
            except zenoh.ZError:
                pass


class _ZHandle(Closable):
    def __init__(self, entity) -> None:
        self._entity = entity
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._entity.undeclare()
            except zenoh.ZError:
                pass


class ZenohTransport(Transport):
    """Owns one Zenoh session; every node of the process shares it.

    `shm`: the shared-memory pool for large payloads of volatile publishers (None: bytes only).
    """

    name = "zenoh"

    def __init__(self, session: zenoh.Session, mode: str = "client", shm: SharedMemory | None = None) -> None:
        self.session = session
        self.mode = mode
        self.shm = shm
        self._handles: list[Closable] = []

    def identity(self) -> str:
        return str(self.session.zid())

    def _keep(self, handle: Closable) -> Closable:
        self._handles.append(handle)
        return handle

    def publisher(self, topic: str, type_name: str, qos: QoSProfile) -> RawPublisher:
        key = key_of(topic)
        reliable = qos.reliability is ReliabilityPolicy.RELIABLE
        opts = dict(
            congestion_control=zenoh.CongestionControl.BLOCK if reliable else zenoh.CongestionControl.DROP,
            reliability=zenoh.Reliability.RELIABLE if reliable else zenoh.Reliability.BEST_EFFORT,
        )
        if qos.durability is DurabilityPolicy.TRANSIENT_LOCAL:
            # Bytes, not the pool: the cache keeps its last `depth` samples for late joiners.
            pub = zext.declare_advanced_publisher(
                self.session,
                key,
                cache=zext.CacheConfig(max_samples=qos.depth),
                publisher_detection=True,
                **opts,
            )
            return self._keep(_ZPublisher(pub))  # type: ignore[return-value]
        pub = self.session.declare_publisher(key, **opts)
        return self._keep(_ZPublisher(pub, self.shm))  # type: ignore[return-value]

    def subscribe(self, topic: str, type_name: str, qos: QoSProfile, on_sample: OnSample) -> Closable:
        key = key_of(topic)

        def callback(sample: zenoh.Sample) -> None:
            payload, att = sample.payload, sample.attachment
            # A large payload that came through shared memory is read with one copy (to_bytes
            # zeroes a new buffer first, then copies into it); asking costs more than that saves
            # below SHM_READ_MIN.
            shm = payload.as_shm() if len(payload) >= SHM_READ_MIN else None
            data = bytes(shm) if shm is not None else payload.to_bytes()
            on_sample(data, att.to_bytes() if att is not None else None)

        if qos.durability is DurabilityPolicy.TRANSIENT_LOCAL:
            sub = zext.declare_advanced_subscriber(
                self.session,
                key,
                callback,
                history=zext.HistoryConfig(detect_late_publishers=True, max_samples=qos.depth),
            )
        else:
            sub = self.session.declare_subscriber(key, callback)
        return self._keep(_ZHandle(sub))

    def serve(self, service: str, srv_type: str, handler: OnRequest) -> Closable:
        def on_query(query: zenoh.Query) -> None:
            payload = query.payload.to_bytes() if query.payload is not None else b""
            try:
                reply = handler(payload, "")
            except Exception as exc:  # the caller gets the error; the server goes on
                query.reply_err(f"{type(exc).__name__}: {exc}")
                return
            query.reply(query.key_expr, reply)

        return self._keep(_ZHandle(self.session.declare_queryable(key_of(service), on_query, complete=True)))

    def call(self, service: str, srv_type: str, request: bytes, timeout: float) -> bytes:
        replies = self.session.get(
            key_of(service),
            payload=request,
            timeout=timeout,
            target=zenoh.QueryTarget.BEST_MATCHING,
        )
        for reply in replies:
            if reply.ok is not None:
                return reply.ok.payload.to_bytes()
            raise ServiceCallError(
                f"service {service} answered with an error: {reply.err.payload.to_string()}"
            )
        raise ServiceCallError(
            f"no server answered service {service} ({srv_type}) within {timeout:g} s: is the node running, "
            "and on this bus (`tether node list`)?"
        )

    def declare_token(self, key: str) -> Closable:
        token = self.session.liveliness().declare_token(key)
        return self._keep(_ZHandle(token))

    def query_tokens(self, pattern: str, timeout: float = 1.0) -> list[str]:
        keys = []
        for reply in self.session.liveliness().get(pattern, timeout=timeout):
            if reply.ok is not None:
                keys.append(str(reply.ok.key_expr))
        return sorted(set(keys))

    def close(self) -> None:
        for handle in reversed(self._handles):
            handle.close()
        self._handles.clear()
        if not self.session.is_closed():
            self.session.close()
