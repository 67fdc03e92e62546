"""The staff audit trail: who did what to which order, with which request id, and how it ended."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from storefront.db.engine import Repository
from storefront.db.schema import staff_audit

__all__ = ["AuditEntry", "StaffAudit"]


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str  # "staff" (one shared password), or "cli"
    action: str  # sign_in, refund, capture, cancel, charge
    order_reference: str | None
    request_id: str | None
    outcome: str  # short words: refund-requested, refused:over-refundable, wrong-password...


class StaffAudit(Repository):
    """Appends to and reads `staff_audit`; rows are never changed."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)

    def record(self, entry: AuditEntry, conn: Connection | None = None) -> None:
        """Append one entry, inside the caller's transaction when one is given."""
        values = {
            "at": entry.at,
            "actor": entry.actor[:64],
            "action": entry.action[:32],
            "order_reference": entry.order_reference,
            "request_id": entry.request_id,
            "outcome": entry.outcome[:64],
        }
        if conn is not None:
            conn.execute(insert(staff_audit).values(**values))
            return
        with self._tx() as own:
            own.execute(insert(staff_audit).values(**values))

    def for_order(self, reference: str) -> list[AuditEntry]:
        """What staff did to this order, oldest first."""
        a = staff_audit.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(staff_audit).where(a.order_reference == reference).order_by(a.at, a.id)
            ).mappings()
            return [
                AuditEntry(
                    at=row["at"],
                    actor=row["actor"],
                    action=row["action"],
                    order_reference=row["order_reference"],
                    request_id=row["request_id"],
                    outcome=row["outcome"],
                )
                for row in rows
            ]
