"""``POST /api/alerts/{id}/notes``: a note in an alert's audit trail (签字留痕) without changing its
state — what the duty officer found, who was called, at any time, open or closed. Who may act on
an alert (acknowledge) may write one; the trail stays append-only."""
from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from .api_alerts import AlertId, AuditOut, _get
from .api_limits import errors, text
from .auth import CurrentUser, Permission
from .store import NotFound, Store


class NoteOnlyIn(BaseModel):
    note: text(2000, 1, "the note (备注)", blank=False)


notes = APIRouter(prefix="/api/alerts", tags=["alerts"], responses=errors(401, 403, 422))


@notes.post("/{alert_id}/notes", response_model=AuditOut, status_code=201, responses=errors(404, 413))
def add_note(alert_id: AlertId, body: NoteOnlyIn, request: Request, principal: CurrentUser) -> AuditOut:
    """Add a note to the alert's audit trail (备注); the alert's state does not change."""
    store: Store = request.app.state.store
    try:
        with store.tx() as db:
            _get(store, principal, alert_id, Permission.ACKNOWLEDGE)
            at = store.clock()
            store.audit(db, alert_id, principal.actor, "note", body.note, at)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return AuditOut(at=at, actor=principal.actor, action="note", note=body.note)
