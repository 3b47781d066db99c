"""Shared pieces of the benchmarks: machine description, a publisher process, and writing a
section of docs/BENCHMARKS.md between markers so each benchmark keeps its own part."""
from __future__ import annotations

import multiprocessing as mp
import os
import platform
import re
import time
from collections import deque
from pathlib import Path

WINDOW = 50_000  # messages a publisher keeps unacknowledged: paho refuses (ERR_QUEUE_SIZE) a message id in use

DOC = Path(__file__).resolve().parents[2] / "docs" / "BENCHMARKS.md"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; load average at start {load:.2f}; "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}")


def write_section(name: str, text: str) -> None:
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    doc = DOC.read_text(encoding="utf-8") if DOC.exists() else (
        "# Benchmarks / 性能测试\n\nWritten by `make bench`. Every goal is a ratio against a ceiling measured "
        "in the same run on the same machine, because the machines are shared and noisy.\n")
    block = f"{begin}\n{text.strip()}\n{end}"
    if begin in doc:
        doc = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(doc, encoding="utf-8")


def _publish(host: str, port: int, messages: list[tuple[str, bytes]], start: mp.Event, done: mp.Queue) -> None:
    from stationwatch.core.contract import MessageClass
    from stationwatch.core.mqtt import BrokerAddress, MqttLink
    link = MqttLink(BrokerAddress(host, port), f"bench-pub-{os.getpid()}")
    link.client.max_inflight_messages_set(1000)
    link.start()
    start.wait()
    t0 = time.perf_counter()
    infos: deque = deque()
    for t, p in messages:
        if len(infos) >= WINDOW:  # a QoS 1 message id (16 bits) still unacknowledged cannot be used again
            infos.popleft().wait_for_publish(120)
        infos.append(link.publish(t, p, MessageClass.READING))
    for info in infos:
        info.wait_for_publish(120)
    done.put(time.perf_counter() - t0)
    link.stop()


def publish_in_process(host: str, port: int, messages: list[tuple[str, bytes]]):
    """A publisher in its own process (as a gateway fleet would be); returns (start, done queue, process)."""
    ctx = mp.get_context("fork")
    start, done = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_publish, args=(host, port, messages, start, done), daemon=True)
    proc.start()
    return start, done, proc
