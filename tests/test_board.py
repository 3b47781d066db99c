"""The duty board as a person sees it: rendered by headless Chromium against the real API served
by uvicorn on a free port, over a real SQLite store."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from stationwatch.alerts.auth import token_hash
from stationwatch.alerts.engine import AlertEngine

from support.alerts import T0, Wire, config_with
from support.board import CHROMIUM, Served

EMPTY_SHOWN = re.compile(r'<div id="empty"[^>]*class="show"')  # the "当前无告警" state is visible
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                                                                "(Debian package 'chromium'; `make test-deps`)")


def rendered(url: str, profile: Path) -> str:
    """The DOM after the page's scripts ran (fetches included), as Chromium dumps it."""
    result = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_board_shows_the_active_alert_in_chinese_with_its_severity_and_place(city_config, tmp_path):
    db, wire = tmp_path / "alerts.db", Wire()
    engine = AlertEngine(city_config, db, clock=lambda: T0)
    [fire] = engine.handle(*wire.event("smk-med-obs", "alarm"))
    engine.beat(connected=True)
    try:
        with Served(city_config, db) as served:
            dom = rendered(served.url, tmp_path / "chromium")
    finally:
        engine.close()
    assert fire.title_zh in dom
    assert f'id="alert-{fire.id}"' in dom and "alert pre_alarm" in dom
    assert "医疗观察室" in dom and "示例市救助管理站" in dom and "开始于 2025-01-15 14:00:00" in dom
    assert 'data-hop="engine">告警引擎 正常' in dom  # the pipeline banner saw the engine's heartbeat
    assert not EMPTY_SHOWN.search(dom)


def test_board_says_no_active_alerts_and_that_the_engine_is_not_running(city_config, tmp_path):
    with Served(city_config, tmp_path / "alerts.db") as served:
        dom = rendered(served.url, tmp_path / "chromium")
    assert EMPTY_SHOWN.search(dom) and "当前无告警" in dom
    assert re.search(r'<div id="demo">演示环境：令牌为 demo-staff-token', dom)  # the demo says how to sign in
    assert 'class="hop down" data-hop="engine">告警引擎 中断' in dom
    assert re.search(r'<div id="pipeline" class="down"[^>]*title="告警引擎无心跳', dom)


STAFF, INSPECTOR = "board-staff-token-0001", "board-inspector-token-0001"
USERS = [{"id": "zhangsan", "name": "值班员张三", "role": "staff", "sites": ["sl-station"], "token_sha256": token_hash(STAFF)},
         {"id": "jiandu", "name": "督查员", "role": "inspector", "sites": ["sl-station"],
          "token_sha256": token_hash(INSPECTOR)}]


@pytest.fixture
def signed_in_world(tmp_path):
    """A production config (no anonymous reading) and a confirmed fire climbing the chain in real time."""
    cfg = config_with(users=USERS, api={"environment": "production"})
    engine = AlertEngine(cfg, tmp_path / "alerts.db")
    engine.watching = False
    engine.handle(*Wire().event("smk-dorm-f1a", "alarm"))
    [fire] = engine.handle(*Wire().event("smk-dorm-f1b", "alarm", ts=T0 + 1))
    engine.beat(connected=True)
    yield cfg, tmp_path / "alerts.db", fire
    engine.close()


def test_signed_in_staff_see_the_level_reached_the_deadline_and_their_buttons(signed_in_world, tmp_path):
    cfg, db, fire = signed_in_world
    with Served(cfg, db) as served:
        dom = rendered(f"{served.url}#token={STAFF}", tmp_path / "chromium")
    assert f'id="alert-{fire.id}"' in dom and '值班员张三<span class="role">值班员</span>' in dom
    assert "已通知：值班人员" in dom and "确认时限 0" in dom  # L1 of 4, counting down from 05:00
    assert 'class="act-acknowledge' in dom
    assert 'class="act-dismiss"' not in dom and 'class="act-resolve"' not in dom  # a confirmed fire: a leader closes it
    assert STAFF not in dom  # the token went to sessionStorage, not into the page or the address


def test_an_inspector_reads_the_board_without_any_button(signed_in_world, tmp_path):
    cfg, db, fire = signed_in_world
    with Served(cfg, db) as served:
        dom = rendered(f"{served.url}#token={INSPECTOR}", tmp_path / "chromium")
    assert f'id="alert-{fire.id}"' in dom and 'class="act-' not in dom


def test_outside_local_use_the_board_asks_to_sign_in(signed_in_world, tmp_path):
    cfg, db, fire = signed_in_world
    with Served(cfg, db) as served:
        dom = rendered(served.url, tmp_path / "chromium")
    assert re.search(r'<div id="signin"[^>]*class="show"', dom) and f'id="alert-{fire.id}"' not in dom
