"""The one WebSocket a signed-in page opens: live updates for that user (balance, calls).

Apps push with `realtime_saas.live.push_to_user(user_id, kind, data)`; the consumer only relays.
A suspended user's sockets are closed through the channel layer (`live.close_user_sockets`).
"""

import json
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from realtime_saas.live import CLOSE_SUSPENDED, staff_group, user_group

INVALID_JSON = {"type": "error", "code": "invalid_json", "message": "Frames must be JSON objects."}


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if getattr(user, "is_suspended", False):
            await self.close(code=CLOSE_SUSPENDED)
            return
        self.groups_joined = [user_group(user.pk)]
        if user.is_staff:
            self.groups_joined.append(staff_group())
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "user": user.pk})

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        # A frame that is not a JSON object is the client's mistake: answered, not a server error.
        try:
            content = json.loads(text_data if text_data is not None else (bytes_data or b""))
        except (ValueError, UnicodeDecodeError):
            content = None
        if not isinstance(content, dict):
            await self.send_json(INVALID_JSON)
            return
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # The socket is push-only; a client message is answered so it can detect a live link.
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def live_event(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": event["kind"], "data": event["data"]})

    async def live_close(self, event: dict[str, Any]) -> None:
        # Leave the groups first, so nothing pushed after this reaches the socket.
        await self.disconnect(event["code"])
        self.groups_joined = []
        await self.close(code=event["code"])
