"""Which file hosts a run may download from (the API token never goes there)."""

from __future__ import annotations

from urllib.parse import urlsplit

from batch_runner.api.http import per_origin


class HostPolicy:
    """Which file URLs may be fetched: exact hostnames and `*.suffix` wildcards, http(s) only."""

    def __init__(self, allowed: list[str], *, require_https: bool = False):
        self.require_https = require_https
        self._known: dict[tuple[str, str], bool] = {}
        self._exact: set[str] = set()
        self._suffixes: list[str] = []
        for host in allowed:
            host = host.strip().lower().rstrip(".")
            if host.startswith("*."):
                # keep the dot: "*.x.net" must not match "evilx.net"
                self._suffixes.append(host[1:])
            elif host:
                self._exact.add(host)

    def allows(self, url: str) -> bool:
        """True when `url` may be downloaded (scheme and host both allowed)."""
        return per_origin(self._known, url, self._allows)  # depends on nothing else

    def _allows(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".")
        except (ValueError, TypeError, AttributeError):
            return False
        schemes = ("https",) if self.require_https else ("http", "https")
        if parts.scheme.lower() not in schemes or not host or parts.username is not None:
            return False
        return host in self._exact or any(host.endswith(s) for s in self._suffixes)
