"""The fake's side of a WebRTC call: an aiortc peer that hears the caller and speaks back."""

import asyncio
import fractions
import logging
import math
import secrets
import time
from collections.abc import Callable

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

log = logging.getLogger("fakes.openai.media")

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms, what Opus and browsers use


def _voice_like_tone() -> np.ndarray:
    # One second of a 220 Hz tone with a 4 Hz syllable-like envelope: clearly not silence for the
    # listener's level meters and VADs, cheap to produce.
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    envelope = 0.55 + 0.45 * np.sin(2 * math.pi * 4 * t)
    wave = 0.25 * envelope * (np.sin(2 * math.pi * 220 * t) + 0.3 * np.sin(2 * math.pi * 440 * t))
    return (wave * 32767).astype(np.int16)


_TONE = _voice_like_tone()


class SpeakerTrack(MediaStreamTrack):
    """Outbound audio: silence, or a voice-like tone while a response is "spoken"."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._timestamp = 0
        self._play_from = 0
        self._play_until = 0

    def play(self, duration_ms: float) -> None:
        # Queue after whatever is still playing, as OpenAI's output audio buffer does.
        if not self.playing:
            self._play_from = self._play_until = self._timestamp
        self._play_until += int(duration_ms * SAMPLE_RATE / 1000)

    def clear(self) -> None:
        self._play_until = self._timestamp

    @property
    def playing(self) -> bool:
        return self._play_until > self._timestamp

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._timestamp += FRAME_SAMPLES
            wait = self._start + self._timestamp / SAMPLE_RATE - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        if self._timestamp < self._play_until:
            offset = (self._timestamp - self._play_from) % SAMPLE_RATE
            idx = (np.arange(FRAME_SAMPLES) + offset) % SAMPLE_RATE
            samples = _TONE[idx]
        else:
            samples = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        return frame


class EnergyVad:
    """Server VAD stand-in: RMS energy against a threshold, with OpenAI's padding/silence knobs."""

    MIN_SPEECH_MS = 60

    def __init__(
        self,
        get_turn_detection: Callable[[], dict | None],
        on_start: Callable[[int], None],
        on_stop: Callable[[int, int], None],
    ) -> None:
        self._cfg = get_turn_detection
        self._on_start = on_start
        self._on_stop = on_stop
        self.t_ms = 0.0
        self.speaking = False
        self._speech_run = 0.0
        self._silence_run = 0.0
        self._start_ms = 0.0

    def feed(self, rms: float, ms: float) -> None:
        cfg = self._cfg()
        self.t_ms += ms
        if not cfg:
            return
        threshold = float(cfg.get("threshold", 0.5) if cfg.get("type") == "server_vad" else 0.5)
        # threshold 0..1 mapped onto -60..-10 dBFS: 0.5 is about -35 dBFS, quiet speech.
        level = 10 ** ((-60 + 50 * threshold) / 20)
        if cfg.get("type") == "semantic_vad":
            silence_ms = {"low": 1500, "high": 300}.get(cfg.get("eagerness", "auto"), 700)
        else:
            silence_ms = int(cfg.get("silence_duration_ms") or 500)
        if rms >= level:
            self._speech_run += ms
            self._silence_run = 0.0
            if not self.speaking and self._speech_run >= self.MIN_SPEECH_MS:
                self.speaking = True
                self._start_ms = self.t_ms - self._speech_run
                self._on_start(int(self._start_ms))
        elif self.speaking:
            self._silence_run += ms
            if self._silence_run >= silence_ms:
                self.speaking = False
                end_ms = self.t_ms - self._silence_run
                self._speech_run = 0.0
                self._on_stop(int(end_ms), int(end_ms - self._start_ms))
        else:
            self._speech_run = 0.0


def _rms(frame) -> float:
    data = frame.to_ndarray().astype(np.float32) / 32768.0
    return float(np.sqrt(np.mean(data * data))) if data.size else 0.0


class MediaPeer:
    def __init__(self, call) -> None:
        self.call = call
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.speaker = SpeakerTrack()
        self.channel = None
        self._tasks: set[asyncio.Task] = set()
        self.vad = EnergyVad(call.turn_detection, call.on_speech_started, call.on_speech_stopped)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        if any(t.kind == "audio" for t in self.pc.getTransceivers()):
            self.pc.addTrack(self.speaker)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    def _on_datachannel(self, channel) -> None:
        self.channel = channel
        self.call.attach_datachannel(channel)

    def _on_track(self, track) -> None:
        if track.kind == "audio":
            task = asyncio.ensure_future(self._listen(track))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _listen(self, track) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.call.note_input_audio()
            self.vad.feed(_rms(frame), 1000 * frame.samples / frame.sample_rate)

    async def _on_state(self) -> None:
        state = self.pc.connectionState
        log.debug("call %s peer %s", self.call.id, state)
        if state == "connected":
            self.call.on_media_connected()
        elif state in ("failed", "closed"):
            self.call.on_media_gone(state)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.channel is not None:
            try:
                self.channel.close()
            except Exception:
                log.debug("data channel close failed", exc_info=True)
        await self.pc.close()


def synthetic_answer(offer_sdp: str) -> str:
    """A well-formed SDP answer for ``--no-media`` calls: mirrors the offer's m-lines, no peer."""
    lines = [ln.strip() for ln in offer_sdp.replace("\r\n", "\n").split("\n") if ln.strip()]
    sections: list[list[str]] = []
    for ln in lines:
        if ln.startswith("m="):
            sections.append([ln])
        elif sections:
            sections[-1].append(ln)
    ufrag, pwd = secrets.token_hex(2), secrets.token_hex(11)
    fingerprint = ":".join(f"{b:02X}" for b in secrets.token_bytes(32))
    mids = []
    body = []
    for index, section in enumerate(sections):
        kind, _port, proto, *fmts = section[0][2:].split()
        mid = next((a[6:] for a in section if a.startswith("a=mid:")), str(index))
        mids.append(mid)
        if kind == "application":
            body += [
                f"m=application 9 {proto} {' '.join(fmts)}",
                "c=IN IP4 0.0.0.0",
                f"a=mid:{mid}",
                "a=sctp-port:5000",
                "a=max-message-size:1073741823",
            ]
        else:
            opus = next(
                (a.split()[0][9:] for a in section if a.startswith("a=rtpmap:") and "opus/48000" in a), "111"
            )
            body += [
                f"m={kind} 9 {proto} {opus}",
                "c=IN IP4 0.0.0.0",
                f"a=mid:{mid}",
                "a=sendrecv",
                "a=rtcp-mux",
                f"a=rtpmap:{opus} opus/48000/2",
                f"a=fmtp:{opus} minptime=10;useinbandfec=1",
            ]
        body += [
            f"a=ice-ufrag:{ufrag}",
            f"a=ice-pwd:{pwd}",
            f"a=fingerprint:sha-256 {fingerprint}",
            "a=setup:active",
            "a=candidate:1 1 udp 2130706431 127.0.0.1 3478 typ host",
        ]
    head = [
        "v=0",
        f"o=- {secrets.randbelow(2**31)} {int(time.time())} IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        f"a=group:BUNDLE {' '.join(mids)}",
        "a=msid-semantic:WMS *",
    ]
    return "\r\n".join(head + body) + "\r\n"


def looks_like_offer(sdp: str) -> bool:
    text = sdp.strip()
    return text.startswith("v=0") and "\nm=" in text.replace("\r\n", "\n")
