"""Ask one gateway to do something and wait for its answer (``cmd/{name}`` with ``args.id`` →
``reply``): what ``stationwatch drill`` and ``stationwatch simulate --scenario`` use, so that a
refusal is an error the person sees, not a success printed over a command that was ignored.

>>> ask(BrokerAddress("127.0.0.1", 1883), "sl-station", "gw-sl-main", "drill", {"action": "start"})  # doctest: +SKIP
Reply(v=1, ts=…, request='a1f3…', command='drill', ok=True, detail=None)
"""
from __future__ import annotations

import threading
import time
import uuid

from .contract import ContractError, Reply, Status, parse
from .mqtt import BrokerAddress, MqttLink
from .wire import MessageClass, payload, topic


class GatewayUnanswered(RuntimeError):
    """The gateway is not online, or did not answer in time; the message says which and what to do."""


def ask(address: BrokerAddress, site: str, gateway: str, name: str, args: dict, timeout: float = 5.0) -> Reply:
    """Send ``cmd/{name}`` to ``gateway`` and return its :class:`Reply` (``ok`` False: refused, ``detail``
    says why); :class:`GatewayUnanswered` if it is not online or does not answer within ``timeout``."""
    request = uuid.uuid4().hex[:16]
    status_topic, reply_topic = topic(site, gateway, MessageClass.STATUS), topic(site, gateway, MessageClass.REPLY)
    statuses: list[Status] = []
    replies: list[Reply] = []
    seen, answered = threading.Event(), threading.Event()

    def on_message(topic_name: str, body: bytes, _msg) -> None:
        try:
            message = parse(topic_name, body)
        except ContractError:
            return
        if message.kind is MessageClass.STATUS:
            statuses.append(message.body)
            seen.set()
        elif message.kind is MessageClass.REPLY and message.body.request == request:
            replies.append(message.body)
            answered.set()

    link = MqttLink(address, f"ask-{gateway}-{request[:6]}", on_message=on_message)
    try:
        link.start()
    except ConnectionError as exc:
        raise GatewayUnanswered(f"{exc} / 无法连接 MQTT 代理; is the broker running?") from None
    try:
        link.subscribe_wait(reply_topic)  # before the command: the answer cannot come too early
        link.subscribe_wait(status_topic)
        seen.wait(min(timeout, 3.0))
        if not statuses or statuses[-1].state != "online":
            raise GatewayUnanswered(f"gateway '{gateway}' is not online / 网关不在线")
        link.publish(topic(site, gateway, MessageClass.CMD, name),
                     payload(time.time(), name=name, args={**args, "id": request}), MessageClass.CMD).wait_for_publish(timeout)
        if not answered.wait(timeout):
            raise GatewayUnanswered(f"gateway '{gateway}' did not answer '{name}' within {timeout:g} s "
                                    f"(a gateway older than this command ignores it) / 网关未应答")
        return replies[0]
    finally:
        link.stop()
