"""The job websocket: ``/ws/mockups/<job id>/`` streams that job's events to its merchant."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from mockups.accounts.selectors import merchant_for_user
from mockups.errors import NotFound
from mockups.jobs.events import job_group, server_loop_register
from mockups.jobs.selectors import job_get

# Close code for "no such job (or not yours)": the same for both, like the HTTP 404.
CLOSE_NOT_FOUND = 4404


@database_sync_to_async
def _job_public_id_for(user: Any, job_id: str) -> str | None:
    try:
        merchant = merchant_for_user(user=user)
        return str(job_get(merchant=merchant, public_id=job_id).public_id)
    except NotFound:
        return None


class JobConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        server_loop_register(asyncio.get_running_loop())
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        public_id = await _job_public_id_for(self.scope.get("user"), job_id)
        if public_id is None:
            # Accept, then close with our code: a client can tell "no such job" from a network
            # failure. Missing, not-yours and not-logged-in look exactly alike.
            await self.accept()
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = job_group(public_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def job_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])
