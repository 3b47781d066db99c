"""What the API accepts and how it refuses the rest: no input answers 500.

* **Field types** every route uses: alert ids within SQLite's integer range, finite Unix times within
  what a date can show, ids in the config's own pattern, text bounded in length and free of lone
  surrogates (which cannot be stored or sent as UTF-8).
* **Bounds**: a request body is at most :data:`MAX_BODY` bytes (413), a maintenance window names at
  most :data:`MAX_DEVICES` devices.
* **Refusals** in one shape, Chinese first: 422 ``{"detail": [{"loc", "msg", "type"}]}`` naming the
  field (the input itself is never echoed back); every other error ``{"detail": "…"}``. Each status
  code a route can answer is in the OpenAPI (:func:`errors`).
"""
from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 64 * 1024  # bytes of a request body: a note of 2,000 characters is ~6 KiB
MAX_DEVICES = 512  # devices named by one maintenance window
MAX_ID = 2**63 - 1  # SQLite's largest integer
MAX_TIME = 253_402_300_799.0  # 9999-12-31T23:59:59Z: the last second a date can show


def _no_surrogates(value: str) -> str:
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ValueError("含有无效的 Unicode 代理字符 / contains a lone surrogate, which is not valid Unicode")
    return value


def text(max_length: int, min_length: int = 0, description: str | None = None, blank: bool = True) -> Any:
    """A bounded string of valid Unicode (``blank=False``: with something besides white space)."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length, description=description,
                                pattern=None if blank else r"\S"), AfterValidator(_no_surrogates)]


IDENT = r"^[a-z0-9][a-z0-9_-]{0,62}$"  # core/fields.py Ident: sites, rooms, devices
Ident = Annotated[str, Field(pattern=IDENT)]
UnixTime = Annotated[float, Field(ge=0, le=MAX_TIME, allow_inf_nan=False, description="Unix time, seconds")]


class ErrorOut(BaseModel):
    detail: str


class FieldErrorOut(BaseModel):
    loc: list[str | int]  # where: ["body", "note"], ["query", "site"], ["path", "alert_id"]
    msg: str  # Chinese first, then English
    type: str


class InvalidOut(BaseModel):
    detail: list[FieldErrorOut]


_DOCS: dict[int, tuple[type[BaseModel], str]] = {
    401: (ErrorOut, "未登录或令牌无效、已过期 / missing, invalid or expired token"),
    403: (ErrorOut, "角色无权执行，或站点不在其范围内 / not allowed for this role, or not one of the caller's sites"),
    404: (ErrorOut, "不存在 / no such alert or window"),
    409: (ErrorOut, "当前状态不允许 / the state does not allow it"),
    413: (ErrorOut, f"请求体超过 {MAX_BODY} 字节 / request body larger than {MAX_BODY} bytes"),
    422: (InvalidOut, "输入无效，指明字段 / invalid input, with the field"),
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of these error codes."""
    return {code: {"model": _DOCS[code][0], "description": _DOCS[code][1]} for code in codes}


def invalid(loc: list[str | int], zh: str, en: str) -> HTTPException:
    """A 422 naming the field, in the shape of every other refusal of input."""
    return HTTPException(422, [{"loc": loc, "msg": f"{zh} / {en}", "type": "value_error"}])


# pydantic's error types in Chinese; the English is pydantic's own message
_ZH = {
    "missing": "缺少必填字段", "extra_forbidden": "不允许的字段", "string_too_long": "文本过长",
    "string_too_short": "文本过短", "string_pattern_mismatch": "格式不正确", "string_type": "应为文本",
    "too_long": "列表过长", "too_short": "列表过短", "list_type": "应为列表", "enum": "取值无效",
    "literal_error": "取值无效", "int_parsing": "应为整数", "int_type": "应为整数", "int_from_float": "应为整数",
    "float_parsing": "应为数字", "float_type": "应为数字", "finite_number": "须为有限数值（不得为 NaN 或无穷大）",
    "bool_parsing": "应为 true 或 false", "bool_type": "应为 true 或 false",
    "greater_than": "数值过小", "greater_than_equal": "数值过小", "less_than": "数值过大", "less_than_equal": "数值过大",
    "json_invalid": "请求体不是有效的 JSON", "model_attributes_type": "应为 JSON 对象", "dict_type": "应为 JSON 对象",
    "model_type": "应为 JSON 对象", "value_error": "取值无效", "string_unicode": "文本不是有效的 UTF-8",
}


def _field_error(error: dict[str, Any]) -> dict[str, Any]:
    loc = [p if isinstance(p, (str, int)) else str(p) for p in error.get("loc", ())]
    named = loc[1:] if error.get("type") != "json_invalid" else []  # there the rest is a character offset
    where = ".".join(str(p) for p in named) or (str(loc[0]) if loc else "request")
    msg = str(error.get("msg", "")).encode("utf-8", "replace").decode()
    return {"loc": loc, "type": error.get("type", "value_error"),
            "msg": f"{where}: {_ZH.get(error.get('type'), '输入无效')} / {msg}"}


async def _refuse_input(_request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": [_field_error(e) for e in exc.errors()]}, status_code=422)


async def _refuse(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400:  # the body could not be parsed at all (e.g. nested too deeply)
        detail: Any = [{"loc": ["body"], "type": "json_invalid",
                        "msg": "body: 请求体无法解析 / the request body could not be parsed"}]
        return JSONResponse({"detail": detail}, status_code=422)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # every method the OpenAPI gives the path, not only those of the first route
        headers["Allow"] = ", ".join(_methods(request.app, request.url.path))
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def _methods(app: FastAPI, path: str) -> list[str]:
    paths = app.openapi()["paths"]
    for template, operations in paths.items():
        if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), path):
            return sorted(m.upper() for m in operations)
    return []


class BodyLimit:
    """Refuses a request body over ``limit`` bytes with 413, by its Content-Length or while it streams."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            return await self._too_large(scope, receive, send)
        seen, refused = 0, False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit and not refused:  # a body streamed without a length: answer now, read no more
                refused = True
                await self._too_large(scope, receive, send)
            return {"type": "http.disconnect"} if refused else message

        async def sending(message: Message) -> None:
            if not refused:  # once the 413 is out, what the app answers to the cut body is dropped
                await send(message)
        await self.app(scope, counted, sending)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        zh, en = f"请求体超过 {self.limit} 字节", f"request body larger than {self.limit} bytes"
        await JSONResponse({"detail": f"{zh} / {en}"}, status_code=413)(scope, receive, send)


def install(app: FastAPI) -> None:
    """The refusals and the body limit of :mod:`.api_limits` on ``app``."""
    app.add_exception_handler(RequestValidationError, _refuse_input)
    app.add_exception_handler(StarletteHTTPException, _refuse)
    app.add_middleware(BodyLimit)
