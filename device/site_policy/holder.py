"""`PolicyHolder`: the site policy a gate holds, applied from MQTT, kept on disk, read per scan.

The contract is protocol/site_policy.py. What the holder does with each message:

- a manifest of this site, newer than or as new as the one held, replaces it: its keys and list
  key are what the gate decides with from then on, and every bucket held that it does not name
  is dropped (the manifest is the authority on which buckets exist). An older one is ignored.
- a bucket replaces the one held when its version is newer or equal; an empty payload (the
  server cleared the retained bucket) drops it.
- a message of another site, a topic that is no policy topic, a payload that breaks the format
  (or a bucket whose payload names another bucket than its topic) is logged and ignored: never
  a crash, and never a loss of what is held.

Threads: `handle` runs on the MQTT thread, one message at a time (a lock orders appliers, in
case a caller has two). Each message makes a new `HeldPolicy` and swaps it in (`current`), which
the frame thread reads without a lock. The files are written by a writer thread of the holder's
own, so a burst of retained buckets at connect (up to 768) never holds the MQTT thread on the SD
card's fsyncs; the decision uses a message as soon as it is applied, and the disk follows within
a moment (`flush` waits for it). Watchers (`watch`) are told after each change, on the MQTT thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from device.site_policy.files import (
    MANIFEST_FILE,
    bucket_file,
    load_policy,
    policy_folder,
    remove_file,
    write_file,
)
from device.site_policy.held import EMPTY_POLICY, HeldPolicy, public_keys
from protocol.site_policy import (
    ListBucket,
    PolicyFormatError,
    decode_bucket,
    decode_manifest,
    parse_policy_topic,
    site_topic_level,
)
from protocol.text import printable

log = logging.getLogger("gatescan.site_policy")


class PolicyHolder:
    """The policy of the site `site_id` (none for a gate without a site id), kept under
    `data_dir` (None: in memory only, for tests and tools)."""

    def __init__(self, site_id: str, data_dir: Path | None) -> None:
        self.site_id = site_id
        self._site_level = site_topic_level(site_id) if site_id else None
        self._folder = policy_folder(data_dir, site_id) if site_id and data_dir else None
        self.current: HeldPolicy = (
            load_policy(self._folder, site_id) if self._folder is not None else EMPTY_POLICY
        )
        if self.current.manifest is not None:
            log.info(
                "site policy: version %d held (%d keys; allow %d, block %d, revoked %d)",
                self.current.manifest.version,
                len(self.current.keys),
                self.current.count("allow"),
                self.current.count("block"),
                self.current.count("revoked"),
            )
        self._apply_lock = threading.Lock()
        self._watchers: list[Callable[[HeldPolicy], None]] = []
        self._pending: dict[str, bytes | None] = {}  # file name -> bytes, or None: remove it
        self._writes = threading.Condition()
        self._writing = False
        self._closed = False
        self._writer: threading.Thread | None = None
        if self._folder is not None:
            self._writer = threading.Thread(
                target=self._write_files, name="site-policy-files", daemon=True
            )
            self._writer.start()

    def read(self) -> HeldPolicy:
        """The current snapshot (what Policy.decide reads, once per scan)."""
        return self.current

    def watch(self, callback: Callable[[HeldPolicy], None]) -> None:
        """Call `callback(snapshot)` after every change the holder applies."""
        self._watchers.append(callback)

    # -- applying messages (the MQTT thread) -----------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> bool:
        """Apply one message of the policy topics; True when it changed what the gate holds.
        Never raises: what cannot be used is logged and ignored."""
        try:
            with self._apply_lock:
                changed = self._apply(topic, payload)
        except Exception:
            log.exception("site policy: a message on %s was not applied", printable(topic, 200))
            return False
        if changed:
            self._tell_watchers()
        return changed

    def _apply(self, topic: str, payload: bytes) -> bool:
        where = parse_policy_topic(topic)
        if where is None:
            log.warning("site policy: ignored a message on %s (no policy topic)", _shown(topic))
            return False
        if self._site_level is None or where.site_level != self._site_level:
            log.warning("site policy: ignored a message for another site (%s)", _shown(topic))
            return False
        if where.kind is None:
            return self._apply_manifest(payload)
        assert where.bucket is not None
        return self._apply_bucket(where.kind, where.bucket, payload)

    def _apply_manifest(self, payload: bytes) -> bool:
        if not payload:
            log.warning("site policy: the manifest was cleared on the broker; the held one is kept")
            return False
        try:
            manifest = decode_manifest(payload)
            keys = public_keys(manifest)
        except (PolicyFormatError, ValueError) as exc:
            log.error("site policy: ignored a manifest that cannot be used: %s", _shown(str(exc)))
            return False
        if manifest.site_id != self.site_id:
            log.error("site policy: ignored a manifest naming another site on this site's topic")
            return False
        held = self.current
        if held.manifest is not None and manifest.version < held.manifest.version:
            log.warning(
                "site policy: ignored manifest version %d, older than the %d held",
                manifest.version,
                held.manifest.version,
            )
            return False
        named: set[tuple[str, int]] = {
            (kind, int(name, 16)) for kind, names in manifest.buckets.items() for name in names
        }
        kept: dict[tuple[str, int], ListBucket] = {
            where: bucket for where, bucket in held.buckets.items() if where in named
        }
        self.current = HeldPolicy.of(manifest, kept, keys)
        for kind, number in sorted(set(held.buckets) - set(kept)):
            self._queue(bucket_file(kind, number), None)
        self._queue(MANIFEST_FILE, payload)
        log.info(
            "site policy: version %d (%d keys; allow %d, block %d, revoked %d entries held)",
            manifest.version,
            len(keys),
            self.current.count("allow"),
            self.current.count("block"),
            self.current.count("revoked"),
        )
        return True

    def _apply_bucket(self, kind: str, number: int, payload: bytes) -> bool:
        held = self.current
        if not payload:
            if (kind, number) not in held.buckets:
                return False
            self.current = held.without_bucket(kind, number)
            self._queue(bucket_file(kind, number), None)
            log.info("site policy: %s bucket %02x cleared", kind, number)
            return True
        try:
            bucket = decode_bucket(payload)
        except PolicyFormatError as exc:
            log.error("site policy: ignored %s bucket %02x: %s", kind, number, _shown(str(exc)))
            return False
        if (bucket.kind, bucket.bucket) != (kind, number):
            log.error("site policy: ignored %s bucket %02x: its payload is another's", kind, number)
            return False
        before = held.buckets.get((kind, number))
        if before is not None and bucket.version < before.version:
            log.info(
                "site policy: ignored %s bucket %02x version %d, older than the %d held",
                kind,
                number,
                bucket.version,
                before.version,
            )
            return False
        self.current = held.with_bucket(bucket)
        self._queue(bucket_file(kind, number), payload)
        log.debug("site policy: %s bucket %02x version %d", kind, number, bucket.version)
        return True

    def _tell_watchers(self) -> None:
        snapshot = self.current
        for callback in self._watchers:
            try:
                callback(snapshot)
            except Exception:
                log.exception("site policy watcher failed")

    # -- the files (the writer thread) -----------------------------------------------------------

    def _queue(self, name: str, data: bytes | None) -> None:
        if self._folder is None:
            return
        with self._writes:
            self._pending.pop(name, None)  # re-inserted last: the manifest stays after its buckets
            self._pending[name] = data
            self._writes.notify_all()

    def _write_files(self) -> None:
        assert self._folder is not None
        while True:
            with self._writes:
                while not self._pending and not self._closed:
                    self._writes.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending, {}
                self._writing = True
            try:
                for name, data in batch.items():
                    self._write_one(name, data)
            finally:
                with self._writes:
                    self._writing = False
                    self._writes.notify_all()

    def _write_one(self, name: str, data: bytes | None) -> None:
        assert self._folder is not None
        try:
            if data is None:
                remove_file(self._folder, name)
            else:
                write_file(self._folder, name, data)
        except OSError as exc:
            # Held in memory all the same; the server's next message writes it again.
            log.error("site policy: could not write %s (%s)", name, exc.strerror or exc)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every applied message is on disk; False if `timeout` passed first."""
        with self._writes:
            return self._writes.wait_for(
                lambda: not self._pending and not self._writing, timeout=timeout
            )

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending, then stop the writer. Safe to call twice."""
        with self._writes:
            self._closed = True
            self._writes.notify_all()
        if self._writer is not None:
            self._writer.join(timeout=timeout)


def _shown(text: str) -> str:
    return printable(text, 200)
