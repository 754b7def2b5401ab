"""An aiortc caller for our tests (like a browser: an `oai-events` channel and a microphone track)."""

import asyncio
import json
import re
import time

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from billing import services as billing
from billing.models import LedgerEntry

KEY_PATTERN = re.compile(r"(?<![A-Za-z0-9])(sk-[A-Za-z0-9_\-]{3,}|ek_[A-Za-z0-9]{4,})")


class Caller:
    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("oai-events")
        self.events: list[dict] = []
        self.channel.on("message", lambda message: self.events.append(json.loads(message)))
        self.channel.on("open", lambda: self.channel.send(json.dumps({"type": "response.create"})))
        self.pc.addTrack(AudioStreamTrack())  # silence, like a muted microphone

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def wait_for(self, event_type: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if event["type"] == event_type:
                    return event
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {event_type} within {timeout} s; got {[e['type'] for e in self.events]}")

    async def wait_connected(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected":
            assert time.monotonic() < deadline, f"peer connection is {self.pc.connectionState}"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.pc.close()


def make_offer() -> str:
    """A real WebRTC offer (for tests that only need the fake to accept it)."""

    async def run() -> str:
        caller = Caller()
        try:
            return await caller.offer()
        finally:
            await caller.close()

    return asyncio.run(run())


def find_keys(text: str) -> list[str]:
    return KEY_PATTERN.findall(text)


def fund(user, credits: int, key: str = "test-grant") -> None:
    billing.grant(user=user, credits=credits, idempotency_key=f"{key}:{user.pk}", kind=LedgerEntry.Kind.BONUS)


def wallet_of(user):
    return billing.get_wallet(user)
