"""Each site's policy (protocol/site_policy.py) from the database to the broker, retained, for
its gates: the thread `policy-publisher` of the collector's process.

Every POLL_S it reads the sites' policy versions (one small query). For a site whose version is
not the one it last published, and for every site at start, after each reconnect and every
REPUBLISH_S (so a revocation past its pass's end drops out: server/store/site_policy.py gives
that a version of its own), it builds the site's whole policy from the database and publishes,
on the collector's own connection, at QoS 1 and retained:

1. each bucket whose digest is not the one it last published (after a reconnect: every bucket,
   as the broker may have lost its retained messages), then an empty retained message on each
   bucket it published before that is now empty (which clears it), waiting for every PUBACK;
2. then the manifest. Buckets first: a gate that reads the new manifest finds its buckets there.

Who is inside a site (the `inside` list, for sites with anti-passback or a capacity) changes
with every passage, not with a command: when the collector has stored events since the last
round, the publisher reads each such site's passages of today again (`refresh_presence`: only
that list, never the site's other lists) and, when it changed, sends its buckets and the
manifest under a new version. So a passage at one gate reaches the site's other gates within a
round or two of its commit.

What it published (each bucket's digest and the version it last changed at) is kept in memory
and in the database (site_policy_buckets), so an unchanged bucket is not sent again, and a
bucket emptied while the server was down is still cleared when it starts.

Nothing here stops the collector: a database or broker error is logged, and the round is tried
again after a pause (RETRY_S, doubling up to REPUBLISH_S).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from protocol.site_policy import ListBucket, bucket_digest, bucket_topic, manifest_topic
from server.collector.batch import utc_now
from server.store.site_policy import (
    DEFAULT_TZ,
    BucketKey,
    BuiltPolicy,
    current_policy,
    ensure_policies,
    policy_versions,
    published_buckets,
    record_published,
    refresh_presence,
)

log = logging.getLogger("gatescan.policy")

POLL_S = 0.5
REPUBLISH_S = 60.0
RETRY_S = 2.0
ACK_TIMEOUT_S = 10.0


class Pending(Protocol):
    def wait(self, timeout: float) -> str | None: ...


class PolicyLink(Protocol):
    """What the publisher asks of the collector's MQTT connection (server/collector/service.py)."""

    def link_number(self) -> int: ...

    def publish_retained(self, topic: str, payload: bytes) -> Pending: ...

    def entries_stored(self) -> int:
        """Events stored so far: when it grows, who is inside may have changed."""
        ...


class PublishError(RuntimeError):
    """The broker did not take a policy message; the round is tried again."""


class PolicyPublisher:
    def __init__(
        self,
        engine: Engine,
        link: PolicyLink,
        *,
        poll_s: float = POLL_S,
        republish_s: float = REPUBLISH_S,
        retry_s: float = RETRY_S,
        ack_timeout_s: float = ACK_TIMEOUT_S,
        clock: Callable[[], datetime] = utc_now,
        tz: ZoneInfo = DEFAULT_TZ,
    ) -> None:
        self._engine = engine
        self._link = link
        self._poll_s = poll_s
        self._republish_s = republish_s
        self._retry_s = retry_s
        self._ack_timeout_s = ack_timeout_s
        self._clock = clock
        self._tz = tz
        self._stored_seen = -1  # the link's entries_stored() when presence was last looked at
        self._built: dict[str, BuiltPolicy] = {}  # site -> the policy last published
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._link_done = 0  # the connection everything was published on
        self._full_at = 0.0  # monotonic time of the last full round
        self._versions: dict[str, int] = {}  # site -> version last published
        self._manifests: dict[str, bytes] = {}  # site -> manifest last published
        self._buckets: dict[str, dict[BucketKey, tuple[str, int]]] = {}
        self.rounds = 0  # rounds that ended without an error (for tests and the log)
        self.failures = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="policy-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the round under way, waiting at most `timeout` for it: a round waits for
        the broker's PUBACKs (up to ack_timeout_s), and a broker gone must not hold a process's
        shutdown (the thread is a daemon)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():
                log.warning("site policy: the round under way still waits; stopping without it")

    def _run(self) -> None:
        pause = self._poll_s
        while not self._stop.wait(pause):
            try:
                self.publish_changes()
            except Exception as exc:  # never the collector's end: log, wait, try again
                self.failures += 1
                if isinstance(exc, PublishError):
                    log.warning("site policy not published: %s; retrying", exc)
                else:
                    log.exception("site policy not published; retrying")
                pause = min(max(pause * 2, self._retry_s), self._republish_s)
            else:
                pause = self._poll_s

    def publish_changes(self) -> None:
        """One round: what changed since the last (everything, on a new connection or when
        REPUBLISH_S has passed). Raises on a database or broker error."""
        link = self._link.link_number()
        if link == 0:
            return  # not connected: paho reconnects, and the next connection publishes all
        fresh = link != self._link_done
        full = fresh or time.monotonic() - self._full_at >= self._republish_s
        if full:  # a scan of the gates', keys' and passes' sites: not every half second
            for site in ensure_policies(self._engine, self._clock()):
                log.info("site %s: a policy of its own (version 1)", site)
        versions = policy_versions(self._engine)
        stored = self._link.entries_stored()
        published = set()
        for site, version in sorted(versions.items()):
            if full or self._versions.get(site) != version:
                self._publish_site(site, resend=fresh)
                published.add(site)
        if stored != self._stored_seen:
            self._refresh_presence(set(self._built) - published)
            self._stored_seen = stored
        if self._link.link_number() != link:
            raise PublishError("the connection changed during the round")
        self._link_done = link
        if full:
            self._full_at = time.monotonic()
        self.rounds += 1

    def _refresh_presence(self, sites: set[str]) -> None:
        """Who is inside, again, at the sites that use it: only the `inside` list is read and
        sent (a site's version moved on meanwhile: all of it)."""
        for site in sorted(sites):
            last = self._built[site]
            if last.manifest.anti_passback == "off" and last.manifest.capacity is None:
                continue
            refreshed = refresh_presence(self._engine, last, self._clock(), self._tz)
            if refreshed is None:
                self._publish_site(site, resend=False)
            elif refreshed is not last:
                self._publish_built(refreshed, resend=False)

    def _publish_site(self, site: str, resend: bool) -> None:
        self._publish_built(current_policy(self._engine, site, self._clock(), self._tz), resend)

    def _publish_built(self, built: BuiltPolicy, resend: bool) -> None:
        site = built.manifest.site_id
        before = self._buckets.get(site)
        if before is None:
            before = published_buckets(self._engine, site)
        after: dict[BucketKey, tuple[str, int]] = {}
        pending: list[tuple[str, Pending]] = []
        for (kind, bucket), entries in built.entries.items():
            digest = bucket_digest(entries)
            last = before.get((kind, bucket))
            unchanged = last is not None and last[0] == digest
            version = last[1] if unchanged and last is not None else built.version
            after[kind, bucket] = (digest, version)
            if resend or not unchanged:
                payload = ListBucket(kind, bucket, version, entries).to_bytes()
                pending.append(self._send(bucket_topic(site, kind, bucket), payload))
        for kind, bucket in sorted(set(before) - set(after)):
            pending.append(self._send(bucket_topic(site, kind, bucket), b""))
        self._wait(pending)
        manifest = built.manifest.to_json()
        sent = bool(pending)
        if resend or manifest != self._manifests.get(site):
            self._wait([self._send(manifest_topic(site), manifest)])
            sent = True
        if sent or after != before:
            record_published(self._engine, built, after)
            self._log(built, len(pending), len(before.keys() - after.keys()))
        self._buckets[site] = after
        self._manifests[site] = manifest
        self._versions[site] = built.version
        self._built[site] = built

    def _send(self, topic: str, payload: bytes) -> tuple[str, Pending]:
        return topic, self._link.publish_retained(topic, payload)

    def _wait(self, pending: list[tuple[str, Pending]]) -> None:
        deadline = time.monotonic() + self._ack_timeout_s
        for topic, handle in pending:
            problem = handle.wait(max(0.0, deadline - time.monotonic()))
            if problem is not None:
                raise PublishError(f"{topic}: {problem}")

    def _log(self, built: BuiltPolicy, sent: int, cleared: int) -> None:
        log.info(
            "site %s: policy version %d published (%d buckets sent, %d of them cleared)",
            built.manifest.site_id,
            built.version,
            sent,
            cleared,
        )
