"""管道健康 — pipeline health: is the path from the gateways to the duty officer working? Ingest's
rate and lag, what it refused and why, failed writes, the alert engine's batches, and notifications
delivered and failed per channel. The services write these figures every 10 s (``pipeline``,
``pipeline_quarantine``, ``notification``); counters are ``*_total``, so rates are derivatives and
a restart (a counter back to 0) is no negative spike."""
from __future__ import annotations

from .panels import GREEN, ORANGE, RED, PanelSpec, Row, Target

EVERY = "10s"  # how often the services write their figures: the shortest useful interval
PER = 'AND $timeFilter GROUP BY time($__interval), "instance" fill(null)'
INGEST = 'FROM "raw"."pipeline" WHERE "service" = \'ingest\''
ENGINE = 'FROM "raw"."pipeline" WHERE "service" = \'alerts\''


def _rate(field: str) -> str:
    return f'non_negative_derivative(max("{field}"), 1s)'


def _count(field: str) -> str:
    return f'non_negative_difference(max("{field}"))'


def pipeline_rows() -> list[Row]:
    return [
        Row("入库 Ingest", (
            PanelSpec("入库速率 / Ingest rate", "timeseries",
                      (Target(f'SELECT {_rate("received_total")} AS "收到 received", {_rate("written_total")} AS "写入 written" '
                              f'{INGEST} {PER}', "$tag_instance $col"),), width=8, unit="short", interval=EVERY,
                      description="每秒消息数 / messages per second"),
            PanelSpec("入库延迟 / Ingest lag", "timeseries",
                      (Target(f'SELECT max("lag_seconds") AS "延迟 lag", max("queue_depth") AS "排队 queued" {INGEST} {PER}',
                              "$tag_instance $col"),), width=8, unit="s", interval=EVERY,
                      thresholds=((None, GREEN), (10.0, ORANGE), (20.0, RED)),
                      description="最新一批读数写入时已过去的秒数（GB 26875.1：火警 10 秒内到达）/ seconds between a reading "
                                  "and its write (a fire alarm must arrive within 10 s)"),
            PanelSpec("写入失败 / Write failures", "timeseries",
                      (Target(f'SELECT {_count("write_errors_total")} {INGEST} {PER}', "$tag_instance"),),
                      width=8, interval=EVERY, thresholds=((None, GREEN), (1.0, RED))),
            PanelSpec("拒收消息累计（按原因）/ Quarantined by reason, since start", "timeseries",
                      (Target('SELECT max("total") FROM "raw"."pipeline_quarantine" WHERE $timeFilter '
                              'GROUP BY time($__interval), "instance", "reason" fill(null)', "$tag_instance $tag_reason"),),
                      width=24, interval=EVERY,
                      description="入库进程启动以来因不符合接口约定而隔离的消息数（拒收原因见 docs/mqtt-contract.md），"
                                  "第一条即可见 / messages refused by the contract since the process started, by reason: "
                                  "the first one shows at once"),
        )),
        Row("告警引擎与通知 Alert engine and notifications", (
            PanelSpec("告警引擎批次速率 / Engine batch rate", "timeseries",
                      (Target(f'SELECT {_rate("batches_total")} AS "批次 batches", {_rate("received_total")} AS "消息 messages" '
                              f'{ENGINE} {PER}', "$tag_instance $col"),), width=8, unit="short", interval=EVERY),
            PanelSpec("告警产生与解除 / Alerts raised and resolved", "timeseries",
                      (Target(f'SELECT {_count("raised_total")} AS "产生 raised", {_count("resolved_total")} AS "解除 resolved", '
                              f'max("outbox_queued") AS "待发 queued" {ENGINE} {PER}', "$tag_instance $col"),),
                      width=8, interval=EVERY),
            PanelSpec("通知送达与失败（按渠道）/ Notifications by channel", "timeseries",
                      (Target(f'SELECT {_count("sent_total")} AS "送达 sent", {_count("failed_total")} AS "失败 failed" '
                              'FROM "raw"."notification" WHERE $timeFilter GROUP BY time($__interval), "channel" fill(null)',
                              "$tag_channel $col"),), width=8, interval=EVERY,
                      description="渠道为通知地址的协议（wecombot、dingtalk、mailto…），不含令牌 / the channel is the URL's "
                                  "scheme, never its token"),
        )),
    ]
