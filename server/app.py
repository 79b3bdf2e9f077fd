"""Wiring only: build the server side from its options. Reads like the table of contents of it.

One function, `build_server`, makes every server process: `gatescan server` (the collector, the
retention purge and the dashboard in one process), `gatescan collector` (the collector alone),
`gatescan web` (the dashboard alone, on a collector's database) and the server half of
`gatescan demo`. What a process runs is what its options name; the rest is None.

`gatescan server --config` also runs the enrolment service (server/enrolment/): HTTPS on a port
of its own, on the LAN, where a gate in setup mode exchanges its card's token for a broker login.
It shares the store with the collector, and tells the collector's map of sites when a gate
enrolled.

Threads of a running server: the collector's two (paho's network thread and the writer, see
server/collector/service.py), the policy publisher's (each site's keys and lists to its gates,
retained, on the collector's connection: server/collector/policy_publisher.py), the purge's
(hourly), the rollouts' (the dashboard's updates to gates, every 5 s:
server/dashboard/rollout/progress.py), the Home Assistant publisher's (server.toml's
[home_assistant]: the gates as HA devices, on a connection of its own, server/home_assistant/),
uvicorn's (the dashboard, on a socket bound before anything starts, so a port in use is a clear
error at once and the address printed answers), and the caller's, which waits for `stop` and logs
the collector's counters. A part that ends by itself (the dashboard failing) sets `stop` too, so
the process ends rather than half-runs. Stopping goes in the reverse order of starting: the
dashboard stops answering, the purge ends, the policy publisher ends, the collector commits and
acknowledges what it holds and disconnects, and the store closes.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocol.broker_tls import BrokerTls
from server.broker_admin.dynsec import AdminLogin
from server.collector.commands import door_releaser
from server.collector.identity import DEFAULT_SHARE_GROUP
from server.collector.limits import DEFAULT_LIMITS, GateLimits
from server.collector.policy_publisher import PolicyPublisher
from server.collector.service import Collector, MqttClient
from server.dashboard.settings import WebSettings
from server.home_assistant.discovery import Prefixes
from server.home_assistant.publisher import HomeAssistantLogin, HomeAssistantPublisher
from server.store.database import Store
from server.store.retention import RetentionTask
from server.store.site_policy import DEFAULT_TZ

if TYPE_CHECKING:
    from server.alerts.rules import Snapshot
    from server.alerts.task import AlertTask
    from server.dashboard.preview.relay import PreviewRelay
    from server.dashboard.rollout.progress import RolloutTask
    from server.enrolment.exchange import PolicyRightsTask

log = logging.getLogger("gatescan.server")
collector_log = logging.getLogger("gatescan.collector")  # its counters, as it always logged them

REPORT_EVERY_S = 60.0  # how often a running collector logs its counters
DASHBOARD_STOP_S = 10.0  # how long stopping waits for requests in progress


@dataclass(frozen=True)
class CollectorLogin:
    """How the collector reaches the broker (the password is never in a config file)."""

    broker_url: str
    client_id: str | None = None  # None: one made for this process (server/collector/identity.py)
    username: str | None = None
    password: str | None = None
    mqtt_client: str = MqttClient.TUNED.value  # a MqttClient value (`--mqtt-client`)
    # The CA file (and a client certificate) for an mqtts:// broker.
    tls: BrokerTls = field(default_factory=BrokerTls)
    # The events' shared subscription (`--share-group`; None: every event to this collector).
    share_group: str | None = DEFAULT_SHARE_GROUP
    session_expiry_s: int | None = None  # None: by the client id (identity.py)
    # Whether this process publishes the sites' policies (`--no-publish-policy`): one collector of
    # several does (server/collector/policy_publisher.py), the others only store.
    publish_policy: bool = True


@dataclass(frozen=True)
class Listen:
    """Where the dashboard answers. `any_port_if_taken`: another free port when `port` is taken
    (the demo, on a developer's machine); a site's server refuses to start instead."""

    host: str = "127.0.0.1"
    port: int = 8080
    any_port_if_taken: bool = False


@dataclass(frozen=True)
class EnrolmentOptions:
    """The enrolment service: where it answers (HTTPS, its certificate signed by the
    installation's CA), what it tells gates, and how it makes their broker clients."""

    listen: Listen
    cert_file: Path
    key_file: Path
    gate_broker_url: str  # mqtts://HOST:PORT, as the gates reach the broker
    ca_pem: str
    admin: AdminLogin


@dataclass(frozen=True)
class ServerOptions:
    """What one server process runs: None leaves that part out."""

    db_url: str
    collector: CollectorLogin | None = None
    dashboard: WebSettings | None = None  # None: no dashboard
    listen: Listen = Listen()
    retention_days: int | None = None  # purge entries older than this; None: never
    web_log_level: str = "info"
    gate_limits: GateLimits = DEFAULT_LIMITS  # each gate's, at the collector
    enrolment: EnrolmentOptions | None = None  # None: no enrolment service
    alerts: AlertOptions | None = None  # None: no alerts
    home_assistant: HomeAssistantOptions | None = None  # None: nothing told to Home Assistant


@dataclass(frozen=True)
class HomeAssistantOptions:
    """server.toml's [home_assistant]: Home Assistant's broker, the prefixes, how often."""

    login: HomeAssistantLogin
    prefixes: Prefixes = field(default_factory=Prefixes)
    every_s: float = 5.0


@dataclass(frozen=True)
class AlertOptions:
    """alerts.toml (server/alerts/config.py), read and checked, and the CA whose end it watches."""

    config_file: Path
    ca_file: Path | None = None


def build_server(options: ServerOptions) -> Server:
    """The server side that `options` asks for, built and not yet started. Raises ListenError
    when the dashboard's or the enrolment service's address cannot be listened on, ImportError
    without the `web` extra."""
    store = Store(options.db_url)
    dashboard = None
    try:
        collector = init_collector(store, options.collector, options.gate_limits)
        policy = init_policy_publisher(store, collector, options)
        retention = init_retention(store, options.retention_days)
        dashboard = init_dashboard(store, options, collector)
        enrolment, rights = init_enrolment(store, options.enrolment, collector)
        alerts = init_alerts(store, options)
        home_assistant = init_home_assistant(store, options)
        rollouts = init_rollouts(store, options, collector)
    except BaseException:
        if dashboard is not None:
            dashboard.close()
        store.close()
        raise
    return Server(
        store=store,
        collector=collector,
        retention=retention,
        dashboard=dashboard,
        enrolment=enrolment,
        policy=policy,
        rights=rights,
        alerts=alerts,
        home_assistant=home_assistant,
        rollouts=rollouts,
    )


def init_rollouts(
    store: Store, options: ServerOptions, collector: Collector | None
) -> RolloutTask | None:
    """The loop that moves the dashboard's rollouts on (server/dashboard/rollout/progress.py),
    in a process with a dashboard and a collector; `gatescan web` alone moves them as its
    updates page is viewed."""
    if options.dashboard is None or collector is None:
        return None
    from server.dashboard.rollout.progress import RolloutTask

    return RolloutTask(store)


def init_home_assistant(store: Store, options: ServerOptions) -> HomeAssistantPublisher | None:
    """The gates published to Home Assistant (server/home_assistant/), online as the fleet page
    says it (the dashboard's --offline-after)."""
    if options.home_assistant is None:
        return None
    settings = options.dashboard or WebSettings()
    return HomeAssistantPublisher(
        store,
        options.home_assistant.login,
        options.home_assistant.prefixes,
        offline_after_s=settings.offline_after_s,
        every_s=options.home_assistant.every_s,
    )


def init_alerts(store: Store, options: ServerOptions) -> AlertTask | None:
    """The alert loop, from alerts.toml; ConfigError (firmware_config.errors) for a bad file."""
    if options.alerts is None:
        return None
    from server.accounts.users import Accounts
    from server.alerts.config import load_alert_config, manager_routes_of, routes_of
    from server.alerts.task import AlertTask, look
    from server.clock import utc_now
    from server.dashboard.settings import WebSettings
    from server.store.alerts import AlertRows

    config_file = options.alerts.config_file
    config = load_alert_config(config_file)
    routes = routes_of(config, config_file.absolute().parent)
    accounts = Accounts(store.engine)
    managers = manager_routes_of(config, config_file.absolute().parent, accounts.alert_recipients)
    settings = options.dashboard or WebSettings()
    ca_file = options.alerts.ca_file

    def look_now(now: datetime) -> Snapshot:
        return look(store, now, settings.offline_after_s, settings.tz, ca_file)

    rules = config.rules
    if "checkins_per_location_day" not in rules.model_fields_set:  # the page's own cap
        rules = rules.model_copy(update={"checkins_per_location_day": settings.checkin_daily_cap})
    return AlertTask(
        look_now,
        rules,
        routes,
        every_s=config.every,
        clear_after_s=config.clear_after,
        clock=utc_now,
        kept=AlertRows(store.engine),  # a restart tells no open alert again
        more_routes=managers,
    )


def init_collector(
    store: Store, login: CollectorLogin | None, limits: GateLimits = DEFAULT_LIMITS
) -> Collector | None:
    if login is None:
        return None
    return Collector(
        broker_url=login.broker_url,
        store=store,
        client_id=login.client_id,
        username=login.username,
        password=login.password,
        mqtt_client=MqttClient(login.mqtt_client),
        tls=login.tls,
        limits=limits,
        share_group=login.share_group,
        session_expiry_s=login.session_expiry_s,
    )


def init_policy_publisher(
    store: Store, collector: Collector | None, options: ServerOptions
) -> PolicyPublisher | None:
    """Each site's policy to its gates, on the collector's connection (none without one); who
    is inside counts from midnight in the site's zone (the dashboard's setting). Only one
    collector of several publishes (`--no-publish-policy` on the others): each round reads the
    sites' passages and makes a new version when who is inside changed, and two publishers
    would make versions of their own and could publish an older manifest after a newer one."""
    if collector is None or options.collector is None or not options.collector.publish_policy:
        return None
    tz = options.dashboard.tz if options.dashboard is not None else DEFAULT_TZ
    return PolicyPublisher(store.engine, collector, tz=tz)


def init_retention(store: Store, retention_days: int | None) -> RetentionTask | None:
    return None if not retention_days else RetentionTask(store, retention_days)


def preview_relay(collector: Collector) -> PreviewRelay:
    """The gates' aim-and-focus previews (server/dashboard/preview/relay.py) on the collector's
    connection: requests out (QoS 1), frames in to the relay's memory, never to the store."""
    from server.dashboard.preview.relay import PreviewRelay

    def send(device_id: str, payload: bytes) -> str | None:
        if collector.link_number() == 0:
            return "the collector is not connected to the broker"
        return collector.send_preview_request(device_id, payload).wait(PREVIEW_PUBACK_WAIT_S)

    relay = PreviewRelay(send)
    collector.set_preview_sink(relay.frame_arrived)
    return relay


PREVIEW_PUBACK_WAIT_S = 5.0


def init_dashboard(
    store: Store, options: ServerOptions, collector: Collector | None = None
) -> DashboardServer | None:
    """The dashboard; with a collector in the same process, a manager may release a gate's door
    from it (a command on the collector's connection: server/collector/commands.py), and
    /metrics shows the collector's counters (server/metrics/)."""
    if options.dashboard is None:
        return None
    from server.dashboard.app import create_web_app
    from server.metrics.families import Ingest

    releaser = None if collector is None else door_releaser(collector)
    ingest = None if collector is None else Ingest(collector.counters)
    preview = None if collector is None else preview_relay(collector)
    app = create_web_app(
        store, options.dashboard, door_releaser=releaser, ingest=ingest, preview=preview
    )
    return DashboardServer(
        app,
        bind(options.listen),
        log_level=options.web_log_level,
        forwarded_allow_ips=options.dashboard.forwarded_allow_ips,
    )


def init_enrolment(
    store: Store, options: EnrolmentOptions | None, collector: Collector | None
) -> tuple[DashboardServer | None, PolicyRightsTask | None]:
    """The enrolment service, and the task that gives an older broker's roles the rights site
    policies need (it logs in as the dynamic security admin, as the exchange does)."""
    if options is None:
        return None, None
    from server.enrolment.exchange import EnrolmentService, EnrolmentSettings, PolicyRightsTask
    from server.enrolment.web import create_enrolment_app
    from server.store.gates import GateRegistry

    settings = EnrolmentSettings(options.gate_broker_url, options.ca_pem, options.admin)
    sites = None if collector is None else collector.sites
    service = EnrolmentService(
        GateRegistry(store.engine),
        settings,
        on_change=(lambda: None) if sites is None else sites.refresh,
    )
    app = create_enrolment_app(service, options.ca_pem)
    try:
        listeners = bind(options.listen)
    except ListenError as exc:
        raise EnrolmentListenError(str(exc)) from exc
    server = DashboardServer(
        app,
        listeners,
        name="enrolment",
        tls_files=(options.cert_file, options.key_file),
    )
    return server, PolicyRightsTask(service)


class Server:
    """A server side built by `build_server`: started, run and stopped in one place."""

    def __init__(
        self,
        *,
        store: Store,
        collector: Collector | None,
        retention: RetentionTask | None,
        dashboard: DashboardServer | None,
        enrolment: DashboardServer | None = None,
        policy: PolicyPublisher | None = None,
        rights: PolicyRightsTask | None = None,
        alerts: AlertTask | None = None,
        home_assistant: HomeAssistantPublisher | None = None,
        rollouts: RolloutTask | None = None,
    ) -> None:
        self.store = store
        self.rollouts = rollouts
        self.home_assistant = home_assistant
        self.alerts = alerts
        self.collector = collector
        self.policy = policy
        self.rights = rights
        self.retention = retention
        self.dashboard = dashboard
        self.enrolment = enrolment
        self._stopped = False

    @property
    def url(self) -> str | None:
        """The dashboard's address, None without one."""
        return None if self.dashboard is None else self.dashboard.url

    def start(self, stop: threading.Event) -> None:
        """Start every part in the background; a part that ends by itself sets `stop`."""
        if self.collector is not None:
            self.collector.start()
        if self.policy is not None:
            self.policy.start()
        if self.retention is not None:
            self.retention.start()
        if self.dashboard is not None:
            self.dashboard.start(on_exit=stop.set)
        if self.enrolment is not None:
            self.enrolment.start(on_exit=stop.set)
        if self.rights is not None:
            self.rights.start()
        if self.alerts is not None:
            self.alerts.start()
        if self.home_assistant is not None:
            self.home_assistant.start()
        if self.rollouts is not None:
            self.rollouts.start()

    def run(self, stop: threading.Event) -> bool:
        """Start, serve until `stop` is set, stop. False when a part ended by itself."""
        try:
            self.start(stop)
            while not stop.wait(REPORT_EVERY_S):
                self._report()
        finally:
            self.stop()
        return not self.failed

    @property
    def failed(self) -> bool:
        """Whether a part ended by itself (the dashboard or the enrolment service)."""
        return any(part is not None and part.failed for part in (self.dashboard, self.enrolment))

    def stop(self) -> None:
        """Stop every part, last started first; then close the store. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if self.rollouts is not None:
            self.rollouts.stop()
        if self.home_assistant is not None:
            self.home_assistant.stop()
        if self.alerts is not None:
            self.alerts.stop()
        if self.rights is not None:
            self.rights.stop()
        if self.enrolment is not None:
            self.enrolment.stop()
        if self.dashboard is not None:
            self.dashboard.stop()
        if self.retention is not None:
            self.retention.stop()
        if self.policy is not None:
            self.policy.stop()
        if self.collector is not None:
            self.collector.stop()
            collector_log.info("collector stopped: %s", self.collector.counters)
        self.store.close()

    def _report(self) -> None:
        if self.collector is not None:
            collector = self.collector
            collector_log.info("collector: %s, %d queued", collector.counters, collector.queued())


class ListenError(OSError):
    """The dashboard's address cannot be listened on (taken, not this machine's, not resolvable)."""


class EnrolmentListenError(ListenError):
    """The same, for the enrolment service's address."""


def bind(listen: Listen) -> list[socket.socket]:
    """Listening TCP sockets on every address `listen.host` resolves to (`localhost`: 127.0.0.1
    and ::1, as uvicorn binds a host name), all on one port; IPv6 ones are IPv6 only, so `::`
    does not also take IPv4. Raises ListenError."""
    try:
        addresses = socket.getaddrinfo(
            listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(f"cannot resolve {listen.host!r}: {exc.strerror}") from exc
    sockets: list[socket.socket] = []
    try:
        port = listen.port
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            sockets.append(_listening(family, kind, proto, (str(address[0]), port), listen))
            port = sockets[-1].getsockname()[1]  # the others share the first one's port
    except BaseException:
        for opened in sockets:
            opened.close()
        raise
    return sockets


def _listening(
    family: int, kind: int, proto: int, address: tuple[str, int], listen: Listen
) -> socket.socket:
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            listener.bind(address)
        except OSError as exc:
            if not listen.any_port_if_taken or address[1] != listen.port:
                message = f"cannot listen on {address[0]} port {address[1]}: {exc.strerror}"
                raise ListenError(message) from exc
            listener.bind((address[0], 0))
        listener.listen(128)
    except BaseException:
        listener.close()
        raise
    return listener


class DashboardServer:
    """The dashboard's web app under uvicorn, in a thread of its own, on sockets already bound
    (early connections wait in the listen queue). uvicorn installs no signal handlers outside the
    main thread: SIGINT and SIGTERM stay the process's own (`stop`)."""

    def __init__(
        self,
        app: Any,
        listeners: list[socket.socket],
        *,
        log_level: str = "info",
        forwarded_allow_ips: tuple[str, ...] = (),
        name: str = "dashboard",
        tls_files: tuple[Path, Path] | None = None,  # (certificate, key): HTTPS
    ) -> None:
        import uvicorn

        self.listeners = listeners
        self.name = name
        host, port = listeners[0].getsockname()[:2]
        scheme = "http" if tls_files is None else "https"
        self.url = f"{scheme}://[{host}]:{port}/" if ":" in host else f"{scheme}://{host}:{port}/"
        # No access log: a URL can hold what a person searched for; the audit log says who
        # looked up whom instead. X-Forwarded-For (and -Proto) is read only from the proxies
        # named: uvicorn's own default believes any local peer (127.0.0.1, ::1, or
        # $FORWARDED_ALLOW_IPS), so anything on this machine could name any address.
        config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            proxy_headers=bool(forwarded_allow_ips),
            forwarded_allow_ips=list(forwarded_allow_ips),
            ssl_certfile=None if tls_files is None else str(tls_files[0]),
            ssl_keyfile=None if tls_files is None else str(tls_files[1]),
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.failed = False

    def start(self, on_exit: Callable[[], None] | None = None) -> None:
        def serve() -> None:
            try:
                self._server.run(sockets=self.listeners)
            except (Exception, SystemExit):  # uvicorn exits when the app's start-up fails
                log.exception("the %s stopped", self.name)
                self.failed = True
            finally:
                if not self._stopping:
                    self.failed = True
                if on_exit is not None:
                    on_exit()

        # A daemon: a request stuck in a handler must not keep the process from ending.
        self._thread = threading.Thread(target=serve, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=DASHBOARD_STOP_S)
        self.close()

    def close(self) -> None:
        """Close the listening sockets (also of a server never started)."""
        for listener in self.listeners:
            listener.close()
