"""Celery doors of billing: thin, idempotent, safe to run twice (beat runs them)."""

from __future__ import annotations

from celery import shared_task

from billing.periodic import prepaid_debits_run, statements_due_run


@shared_task(name="billing.tasks.prepaid_debits", ignore_result=True)
def prepaid_debits_task() -> int:
    return prepaid_debits_run()


@shared_task(name="billing.tasks.statements_due", ignore_result=True)
def statements_due_task() -> int:
    return statements_due_run()
