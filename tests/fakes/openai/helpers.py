"""An aiortc caller for tests: offers like a browser, speaks a synthetic voice, listens back."""

import asyncio
import contextlib
import fractions
import json
import math
import time

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

RATE = 48000
FRAME = 960


class ScriptedMic(MediaStreamTrack):
    """Plays (seconds, loud?) segments, then silence forever: speech followed by a pause."""

    kind = "audio"

    def __init__(self, segments: list[tuple[float, bool]]) -> None:
        super().__init__()
        self.segments = segments
        self._start: float | None = None
        self._ts = 0

    def _loud_at(self, t: float) -> bool:
        for seconds, loud in self.segments:
            if t < seconds:
                return loud
            t -= seconds
        return False

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._ts += FRAME
            wait = self._start + self._ts / RATE - time.time()
            if wait > 0:  # a microphone: one 20 ms frame per 20 ms of real time, as WebRTC expects
                await asyncio.sleep(wait)
        if self._loud_at(self._ts / RATE):
            t = (np.arange(FRAME) + self._ts) / RATE
            samples = (0.3 * 32767 * np.sin(2 * math.pi * 300 * t)).astype(np.int16)
        else:
            samples = np.zeros(FRAME, dtype=np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self._ts, fractions.Fraction(1, RATE)
        return frame


class Caller:
    def __init__(self, mic: MediaStreamTrack | None = None) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("oai-events")
        self.events: list[dict] = []
        self.event_arrived = asyncio.Event()
        self.loud_frames = 0
        self.frames = 0
        self.channel_closed = asyncio.Event()
        self.channel.on("message", self._on_message)
        self.channel.on("close", self.channel_closed.set)
        self.pc.on("track", self._on_track)
        self.pc.addTrack(mic or ScriptedMic([]))
        self._tasks: list[asyncio.Task] = []

    def _on_message(self, message: str) -> None:
        self.events.append(json.loads(message))
        self.event_arrived.set()

    def _on_track(self, track) -> None:
        self._tasks.append(asyncio.ensure_future(self._listen(track)))

    async def _listen(self, track) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.frames += 1
            data = frame.to_ndarray().astype(np.float32) / 32768
            if float(np.sqrt(np.mean(data * data))) > 0.01:
                self.loud_frames += 1

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def wait_for(self, event_type: str, timeout: float = 10.0, after: int = 0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events[after:]:
                if event["type"] == event_type:
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {event_type}; got {[e['type'] for e in self.events]}")
            self.event_arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event_arrived.wait(), remaining)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
