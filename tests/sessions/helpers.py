"""An aiortc caller for our tests (like a browser: an `oai-events` channel and a microphone track)."""

import asyncio
import json
import re

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from tests.waiting import await_until

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
        def arrived() -> dict | None:
            return next((event for event in self.events if event["type"] == event_type), None)

        return await await_until(arrived, timeout=timeout, what=f"{event_type} at the caller")

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await await_until(lambda: self.pc.connectionState == "connected", timeout=timeout,
                          what="the peer connection connected")

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

