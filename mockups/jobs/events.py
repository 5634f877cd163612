"""Events on a job's websocket group, sent after the database commit.

Each event is one JSON object with ``type``, ``job`` (public id) and ``seq`` (increasing per
job), plus its own fields. Events are hints: a client refetches the job over HTTP on every
connect and reconnect, so a lost event loses nothing. Events carry URLs, never image bytes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction
from django.db.models import F

if TYPE_CHECKING:
    from mockups.jobs.models import Job

logger = logging.getLogger(__name__)

# The event loop of the ASGI server in this process, for the in-memory layer (embedded default):
# its queues belong to that loop, so a worker thread must hand events to it, not to a loop of its own.
_server_loop: asyncio.AbstractEventLoop | None = None
_listeners: list[Any] = []


def server_loop_register(loop: asyncio.AbstractEventLoop) -> None:
    global _server_loop
    _server_loop = loop


def job_group(public_id: object) -> str:
    return f"job-{public_id}"


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    payload = {"type": "job.event", "event": message}
    try:
        if isinstance(layer, InMemoryChannelLayer):
            loop = _server_loop
            if loop is None or loop.is_closed():
                return  # no websocket server in this process: nobody could be listening
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                loop.create_task(layer.group_send(group, payload))
            else:
                asyncio.run_coroutine_threadsafe(layer.group_send(group, payload), loop).result(timeout=5)
        else:
            async_to_sync(layer.group_send)(group, payload)
    except Exception:  # an event is a hint; never let a broken layer fail a job
        logger.exception("could not send %s to %s", message.get("type"), group)


def event_publish(*, job: Job, type: str, **fields: Any) -> None:
    """Number the event and send it once the surrounding transaction commits."""
    from mockups.jobs.models import Job

    Job.objects.filter(pk=job.pk).update(event_seq=F("event_seq") + 1)
    seq = Job.objects.filter(pk=job.pk).values_list("event_seq", flat=True).first() or 0
    message = {"type": type, "job": str(job.public_id), "seq": seq, **fields}
    group = job_group(job.public_id)

    def deliver() -> None:
        _send(group, message)
        for listener in list(_listeners):
            listener(job, message)

    transaction.on_commit(deliver)


def event_listener_add(listener: Any) -> None:
    """Other parts (webhooks) hear every event after commit: ``listener(job, message)``."""
    if listener not in _listeners:
        _listeners.append(listener)
