"""Bias audits of reward scores: ``audit()`` and the ``crm audit`` command (see ``engine.audit``)."""

from .engine import audit
from .report import AuditReport

__all__ = ["AuditReport", "audit"]
