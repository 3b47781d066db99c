"""Notification channels: a one-method interface whose answer says whether a retry makes sense.

Every apprise URL works (``wecombot://``, ``dingtalk://``, ``feishu://``, ``mailto://``, ``json://``
…); SMS goes through a provider plugin registered with apprise (:mod:`.sms`, ``smsgw://``). A
channel with its own code is one class with ``send`` and one line in :data:`CHANNELS`.

>>> AppriseChannel().send("not-a-channel://x", Notice("t", "b", "warning"))
Outcome(ok=False, retry=False, error='channel URL not understood by apprise / 通知地址无法识别')
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Protocol

from .notify import Notice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    retry: bool = False  # a later attempt on the same channel may succeed (5xx, 429, timeout)
    error: str | None = None


class Channel(Protocol):
    def send(self, url: str, notice: Notice) -> Outcome:
        """One delivery attempt of ``notice`` to ``url``."""


_HTTP_STATUS = re.compile(r"error=(\d{3})")
_FINAL_STATUS = {400, 401, 403, 404, 405, 410, 413, 422}  # asking again will not help


def classify(error: str) -> bool:
    """From apprise's log text: is the failure worth another attempt?"""
    status = _HTTP_STATUS.search(error)
    return not (status and int(status.group(1)) in _FINAL_STATUS)


class AppriseChannel:
    """Any apprise URL. Apprise reports success as a bool and the reason in its log; the log is
    captured per attempt to tell a server error or a timeout (retry) from a refusal (fail over)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _service(self, url: str):
        import apprise
        cache = self._local.__dict__.setdefault("services", {})
        if url not in cache:
            cache[url] = apprise.Apprise.instantiate(url)
        return cache[url]

    def send(self, url: str, notice: Notice) -> Outcome:
        import apprise

        from . import sms  # noqa: F401 — registers the SMS provider plugin with apprise
        service = self._service(url)
        if service is None:
            return Outcome(False, False, "channel URL not understood by apprise / 通知地址无法识别")
        body = notice.short if getattr(service, "service_name", "") == sms.SERVICE_NAME else notice.body
        with apprise.LogCapture(level=logging.WARNING) as captured:
            ok = bool(service.notify(body=body, title=notice.title, notify_type=notice.notify_type))
        if ok:
            return Outcome(True)
        lines = [line.split(" - ", 2)[-1] for line in captured.getvalue().splitlines() if line.strip()]
        error = "; ".join(lines)[:500] or "delivery failed"
        return Outcome(False, classify(error), error)


# by URL scheme; anything else goes through apprise
CHANNELS: dict[str, Channel] = {}
DEFAULT = AppriseChannel()


def channel_for(url: str) -> Channel:
    return CHANNELS.get(url.split("://", 1)[0].lower(), DEFAULT)


_SECRET_IN_URL = re.compile(r"(?<=://)([^/@:]*)(:[^/@]*)?@")


def redact(url: str) -> str:
    """A channel URL fit for a table anyone may read: apprise's own privacy form when it knows
    the scheme, else the password part removed."""
    try:
        import apprise

        from . import sms  # noqa: F401
        service = apprise.Apprise.instantiate(url)
        if service is not None:
            return service.url(privacy=True)
    except Exception:  # noqa: BLE001 — redaction must never fail a delivery record
        pass
    return _SECRET_IN_URL.sub(lambda m: f"{m.group(1)}:****@" if m.group(2) else "****@", url)
