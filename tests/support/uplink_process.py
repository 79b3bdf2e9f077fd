"""A gate's uplink alone in its own process, for tests that kill it (SIGKILL, SIGSTOP).

Run as `python -m tests.support.uplink_process --broker-url ... --data-dir ...` from the
project root. It prints "online" once connected, then runs until its stdin closes, and then stops
cleanly, so a test that dies never leaves it behind.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from device.journal.journal import Journal
from device.uplink.link import Uplink


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--device-id", required=True)
    parser.add_argument("--boot-id", required=True)
    parser.add_argument("--keepalive", type=int, default=15)
    args = parser.parse_args(argv)

    online = threading.Event()
    journal = Journal(args.data_dir)
    uplink = Uplink(
        device_id=args.device_id,
        broker_url=args.broker_url,
        journal=journal,
        version="test",
        boot_id=args.boot_id,
        keepalive=args.keepalive,
        on_connection_change=lambda up: online.set() if up else online.clear(),
    )
    uplink.start()
    online.wait()
    print("online", flush=True)
    sys.stdin.read()  # until the test closes our stdin (or kills us)
    uplink.stop()
    journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
