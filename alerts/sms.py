"""SMS through a provider's HTTP gateway, as an apprise plugin (``smsgw://``).

Chinese SMS providers (阿里云短信, 腾讯云短信 …) sit behind an HTTP API that takes the phone numbers
and a text under a registered signature; deployments usually put a small relay in front of the
provider's SDK. This plugin speaks the relay's JSON::

    smsgw://user:key@sms-relay.example:8080/send?to=13800000001,13800000002&sign=救助站&tls=yes

posts ``{"to": [...], "sign": "...", "text": "..."}`` (basic auth with ``user:key`` when given) and
counts any 2xx as sent. The text is the one-line short form of the notice (SMS is paid per 70 chars).
"""
from __future__ import annotations

from apprise.decorators import notify
from apprise.logger import logger

SERVICE_NAME = "SMS gateway / 短信网关"
SCHEME = "smsgw"


@notify(on=SCHEME, name=SERVICE_NAME)
def send_sms(body: str, title: str, notify_type: str, meta: dict, *args, **kwargs) -> bool:
    import httpx

    qsd = meta.get("qsd", {})
    to = [n for n in qsd.get("to", "").split(",") if n]
    if not to:
        logger.warning("SMS gateway: no phone number in ?to= error=400")
        return False
    scheme = "https" if qsd.get("tls", "no").lower() in ("yes", "true", "1") else "http"
    port = f":{meta['port']}" if meta.get("port") else ""
    url = f"{scheme}://{meta.get('host', '')}{port}{meta.get('fullpath', '/')}"
    auth = (meta["user"], meta.get("password") or "") if meta.get("user") else None
    try:
        response = httpx.post(url, json={"to": to, "sign": qsd.get("sign", "StationWatch"), "text": body},
                              auth=auth, timeout=float(qsd.get("timeout", 5)))
    except httpx.HTTPError as exc:
        logger.warning("A Connection error occurred sending SMS through %s: %s", meta.get("host"), type(exc).__name__)
        return False
    if response.status_code >= 300:
        logger.warning("SMS gateway refused the message: error=%d", response.status_code)
        return False
    return True
