"""Dramatiq actors of the API: webhook delivery and the ``Cancel-After`` deadline. Messages carry ids only."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import CurrentMessage

from mockups.queue import QUEUE_CPU, QUEUE_WEBHOOKS


def _attempt() -> int:
    message = CurrentMessage.get_current_message()
    return int(message.options.get("retries", 0)) + 1 if message is not None else 1


@dramatiq.actor(queue_name=QUEUE_WEBHOOKS, max_retries=0, time_limit=120_000)
def webhook_send(job_id: str, event: str, webhook_id: str) -> None:
    """Deliver one webhook event; a failed ``completed`` raises, and its message options retry it."""
    from mockups.api.webhooks import webhook_deliver

    webhook_deliver(job_id=job_id, event=event, webhook_id=webhook_id, attempt=_attempt())


@dramatiq.actor(queue_name=QUEUE_CPU, max_retries=3, time_limit=60_000)
def prediction_deadline(job_id: str) -> None:
    """Cancel a job that is still unfinished when the ``Cancel-After`` its creator gave runs out."""
    from mockups.api.services import job_deadline_reached

    job_deadline_reached(public_id=job_id)
