"""The image's HEALTHCHECK (`python3 -m bot.healthcheck`): a web container (`zqbo serve`) is healthy
when its own GET /healthz answers 200 (the store answers); a worker or a one-shot command serves no
HTTP, so it is healthy while it runs. Standard library only: it runs every 10 s."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path


def main() -> int:
    try:
        args = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    except OSError:
        args = [b"serve"]
    if b"serve" not in args:
        return 0
    url = f"http://127.0.0.1:{os.environ.get('PORT', '3000')}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as exc:
        print(f"zqbo healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
