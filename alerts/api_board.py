"""What the duty board needs besides the alerts, and the API's own docs without the internet.

``GET /api/board``  public: whether this is the demo (and how to get a token there), and the
                    false-alarm reasons a dismissal offers (误报原因). Tells nothing about sites or alerts.
``GET /docs``       Swagger UI from the files the ``fastapi-offline`` package ships, served by the API
                    itself under ``/static/swagger`` (FastAPI's default loads them from a CDN, so a
                    control room without internet saw a blank page).
"""
from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

SWAGGER_STATIC = "/static/swagger"


class Reason(BaseModel):
    code: str
    zh: str
    en: str


# Why an alert was a false alarm: the causes a duty officer picks from; "other" needs words.
DISMISS_REASONS = (
    Reason(code="cooking", zh="烹饪油烟、水汽", en="cooking fumes or steam"),
    Reason(code="smoking", zh="吸烟", en="someone smoking"),
    Reason(code="test", zh="检修或测试", en="maintenance or a test"),
    Reason(code="device", zh="设备故障误报", en="a faulty device"),
    Reason(code="staff", zh="工作人员正常通行", en="staff passing as planned"),
    Reason(code="other", zh="其他（请说明）", en="other (say what)"),
)


class BoardOut(BaseModel):
    environment: str  # local (the demo), staging, production
    demo: bool
    sign_in_zh: str  # how to get a token, for the sign-in box
    sign_in_en: str
    dismiss_reasons: list[Reason]


HINTS = {
    True: ("演示环境：令牌为 demo-staff-token（值班员）、demo-leader-token（站领导）、demo-inspector-token（督查）等，"
           "见 docs/examples/city-station.yaml",
           "Demo: tokens are demo-staff-token (duty officer), demo-leader-token (leader), "
           "demo-inspector-token (inspector) …, see docs/examples/city-station.yaml"),
    False: ("请向管理员索取个人令牌（管理员用 stationwatch token 生成）",
            "Ask the administrator for your personal token (made with `stationwatch token`)"),
}

board_api = APIRouter(prefix="/api/board", tags=["duty board"])


@board_api.get("", response_model=BoardOut)
def board_settings(request: Request) -> BoardOut:
    """The duty board's settings: the demo or not, how to get a token, the false-alarm reasons."""
    environment = request.app.state.cfg.api.environment
    zh, en = HINTS[environment == "local"]
    return BoardOut(environment=environment, demo=environment == "local", sign_in_zh=zh, sign_in_en=en,
                    dismiss_reasons=list(DISMISS_REASONS))


def install_docs(app: FastAPI) -> None:
    """``/docs`` with Swagger UI's files served from this machine (the app is made with docs_url=None)."""
    app.mount(SWAGGER_STATIC, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} · API",
                                   swagger_js_url=f"{root}{SWAGGER_STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{SWAGGER_STATIC}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{SWAGGER_STATIC}/favicon.png")
