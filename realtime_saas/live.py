"""Push live updates to browsers through the channel layer (see consumers.LiveConsumer)."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def staff_group() -> str:
    return "staff"


async def apush(group: str, kind: str, data: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    await layer.group_send(group, {"type": "live.event", "kind": kind, "data": data})


def push(group: str, kind: str, data: dict) -> None:
    """Best effort: a page that misses a push catches up on reload; never fail the caller."""
    try:
        async_to_sync(apush)(group, kind, data)
    except Exception:
        logger.warning("live push to %s failed", group, exc_info=True)


def push_to_user(user_id: int, kind: str, data: dict) -> None:
    push(user_group(user_id), kind, data)
