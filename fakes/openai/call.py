"""One Realtime call: its session, conversation, event fan-out, responses, usage and end."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from fakes.openai import ids
from fakes.openai.errors import ApiError
from fakes.openai.session import apply_update, text_tokens

if TYPE_CHECKING:
    from aiohttp import web

    from fakes.openai.config import KeyInfo
    from fakes.openai.media import MediaPeer
    from fakes.openai.state import Fake

log = logging.getLogger("fakes.openai.call")

REPLIES = (
    "Loud and clear! I can hear you.",
    "Sure, I can help with that.",
    "That is a good question.",
    "Okay. Anything else?",
)
MESSAGE_OVERHEAD_TOKENS = 4  # "a few special tokens per message"
CACHE_CHUNK = 64


class DataChannelSink:
    kind = "datachannel"

    def __init__(self, channel) -> None:
        self.channel = channel

    def send(self, data: str) -> None:
        if self.channel.readyState == "open":
            self.channel.send(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        with contextlib.suppress(Exception):
            self.channel.close()


class SidebandSink:
    """A sideband WebSocket; a writer task keeps event order and never blocks the emitter."""

    kind = "sideband"

    def __init__(self, ws: web.WebSocketResponse, key_id: str) -> None:
        self.ws = ws
        self.key_id = key_id
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.task = asyncio.ensure_future(self._writer())

    def send(self, data: str) -> None:
        if not self.closed.is_set():
            self.queue.put_nowait(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.queue.put_nowait(("close", code, reason))

    def abort(self) -> None:
        # A dropped network path: no close frame, the client sees 1006.
        transport = self.ws._req.transport if self.ws._req is not None else None
        if transport is not None:
            transport.abort()
        self.closed.set()
        self.task.cancel()

    async def _writer(self) -> None:
        try:
            while True:
                item = await self.queue.get()
                if isinstance(item, tuple):
                    _, code, reason = item
                    self.closed.set()
                    await self.ws.close(code=code, message=reason.encode()[:120])
                    return
                await self.ws.send_str(item)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            self.closed.set()


class Call:
    def __init__(
        self,
        fake: Fake,
        *,
        session: dict,
        key: KeyInfo,
        usage_key_id: str | None,
        headless: bool,
        sideband_404_delay: float,
        session_cap_seconds: float,
        transport: str = "webrtc",
    ) -> None:
        self.fake = fake
        self.id = ids.call_id()
        self.session = session
        self.key = key
        self.project_id = key.project_id
        self.usage_key_id = usage_key_id
        self.headless = headless
        self.transport = transport
        self.state = "connecting" if not headless else "active"
        self.end_reason: str | None = None
        self.created_at = time.time()
        self._created_mono = time.monotonic()
        self.connected_at: float | None = None if not headless else self.created_at
        self.ended_at: float | None = None
        self.sideband_ready_mono = self._created_mono + sideband_404_delay
        self.session_cap_seconds = session_cap_seconds
        self.sinks: list[Any] = []
        self.datachannel: DataChannelSink | None = None
        self.media: MediaPeer | None = None
        self.refer_target: str | None = None  # where a REFER sent the call
        self.conversation_id = ids.conversation_id()
        self.items: list[dict] = []  # {"id", "role", "text_tokens", "audio_tokens"}
        self.events_sent = 0
        self.responses = 0
        self.audio_sent = False
        self.response_task: asyncio.Task | None = None
        self._cancel_requested = False
        self._turn_lock = asyncio.Lock()
        self._prev_prefix = (0, 0)  # text, audio tokens the model has already seen
        self._input_audio_ms = 0.0
        self._input_audio_at: float | None = None
        self._speech_item: str | None = None
        self._playback_end = 0.0
        self._playback_response: str | None = None
        self._playback_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self.script: dict | None = None
        self._script_task: asyncio.Task | None = None
        self.hangup_requests: list[float] = []
        self.sideband_attached_at: list[float] = []  # Unix time of each sideband attach (control API)
        self.response_done_log: deque[dict] = deque(maxlen=2000)
        self.usage_totals = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "responses": 0}
        self.ended = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._cap_handle = (
            loop.call_later(session_cap_seconds, self.expire) if session_cap_seconds > 0 else None
        )
        self._connect_handle: asyncio.TimerHandle | None = None

    def expect_connection(self, timeout: float) -> None:
        """A WebRTC caller that never completes ICE/DTLS would otherwise hold a peer until the cap."""
        if timeout > 0:
            self._connect_handle = asyncio.get_running_loop().call_later(timeout, self._connect_timed_out)

    def _connect_timed_out(self) -> None:
        if self.state == "connecting":
            self.spawn(self.end("connect_timeout"))

    # --- bookkeeping -------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        return self.state != "ended"

    def sideband_ready(self) -> bool:
        if not self.live or time.monotonic() < self.sideband_ready_mono:
            return False
        return not self.fake.config.sideband_requires_connection or self.connected_at is not None

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def turn_detection(self) -> dict | None:
        return self.session["audio"]["input"].get("turn_detection")

    def describe(self) -> dict:
        return {
            "id": self.id,
            "state": self.state,
            "end_reason": self.end_reason,
            "transport": self.transport,
            "headless": self.headless,
            "project_id": self.project_id,
            "api_key_id": self.key.key_id,
            "usage_api_key_id": self.usage_key_id,
            "model": self.session["model"],
            "created_at": self.created_at,
            "connected_at": self.connected_at,
            "ended_at": self.ended_at,
            "sidebands": sum(1 for s in self.sinks if s.kind == "sideband"),
            "datachannel_open": self.datachannel is not None
            and self.datachannel.channel.readyState == "open",
            "events_sent": self.events_sent,
            "responses": self.responses,
            "usage_totals": dict(self.usage_totals),
            "script": self.script,
            "hangup_requests": list(self.hangup_requests),
            "sideband_attached_at": list(self.sideband_attached_at),
            "response_done_log": list(self.response_done_log),
            "session": self.session,
        }

    # --- fan-out -----------------------------------------------------------------------------

    def emit(self, event: dict, *, only=None) -> dict:
        event = {"event_id": ids.event_id(), **event}
        data = json.dumps(event)
        targets = [only] if only is not None else list(self.sinks)
        for sink in targets:
            try:
                sink.send(data)
            except Exception:
                log.debug("sink send failed", exc_info=True)
        self.events_sent += 1
        return event

    def error(self, err: ApiError | dict, *, only=None, client_event_id: str | None = None) -> None:
        body = err.body()["error"] if isinstance(err, ApiError) else err
        self.emit({"type": "error", "error": {**body, "event_id": client_event_id}}, only=only)

    def attach_datachannel(self, channel) -> None:
        sink = DataChannelSink(channel)
        self.datachannel = sink

        @channel.on("message")
        def _on_message(message) -> None:
            self.handle_client_text(message, sink)

        @channel.on("close")
        def _on_close() -> None:
            if sink in self.sinks:
                self.sinks.remove(sink)

        def _opened() -> None:
            self.sinks.append(sink)
            self.emit({"type": "session.created", "session": self.session}, only=sink)

        if channel.readyState == "open":
            _opened()
        else:
            channel.on("open", _opened)

    def attach_sideband(self, sink: SidebandSink) -> None:
        self.sideband_attached_at.append(time.time())
        self.sinks.append(sink)
        hello = self.fake.config.sideband_hello
        if hello in ("session.created", "session.updated"):
            self.emit({"type": hello, "session": self.session}, only=sink)

    def detach(self, sink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)

    def drop_sidebands(self, mode: str = "abort", code: int = 1011) -> int:
        dropped = [s for s in self.sinks if s.kind == "sideband"]
        for sink in dropped:
            self.sinks.remove(sink)
            if mode == "abort":
                sink.abort()
            else:
                sink.close(code, "dropped by fake control API")
        return len(dropped)

    # --- media callbacks ---------------------------------------------------------------------

    def on_media_connected(self) -> None:
        if self.connected_at is None:
            self.connected_at = time.time()
        if self.state == "connecting":
            self.state = "active"

    def on_media_gone(self, state: str) -> None:
        if self.live:
            self.spawn(self.end("peer_" + state))

    def note_input_audio(self) -> None:
        self._input_audio_at = time.monotonic()

    def on_speech_started(self, audio_start_ms: int) -> None:
        self._speech_item = ids.item_id()
        self.emit(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": audio_start_ms,
                "item_id": self._speech_item,
            }
        )
        td = self.turn_detection() or {}
        if td.get("interrupt_response", True) and self.playing:
            self.clear_output_audio()

    def on_speech_stopped(self, audio_end_ms: int, speech_ms: int) -> None:
        item_id = self._speech_item or ids.item_id()
        self._speech_item = None
        self.emit(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": audio_end_ms, "item_id": item_id}
        )
        self.add_user_audio(item_id, speech_ms)
        td = self.turn_detection() or {}
        if td.get("create_response", True):
            self.spawn(self._turn({}))

    def add_user_audio(self, item_id: str, speech_ms: float) -> None:
        previous = self.items[-1]["id"] if self.items else None
        self.emit({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id})
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._add_item(item, text=0, audio=max(1, math.ceil(speech_ms / 100)))

    def _add_item(self, item: dict, *, text: int, audio: int) -> None:
        previous = self.items[-1]["id"] if self.items else None
        self.items.append(
            {"id": item["id"], "role": item.get("role"), "text_tokens": text, "audio_tokens": audio}
        )
        self.emit({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        self.emit({"type": "conversation.item.done", "previous_item_id": previous, "item": item})

    # --- output audio ------------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        return self._playback_end > time.monotonic()

    def play_audio(self, response_id: str, duration_ms: float) -> None:
        now = time.monotonic()
        if not self.playing:
            self._playback_end = now
            self.emit({"type": "output_audio_buffer.started", "response_id": response_id})
        self._playback_end += duration_ms / 1000
        self._playback_response = response_id
        self.audio_sent = True
        if self.media is not None:
            self.media.speaker.play(duration_ms)
        if self._playback_handle is not None:
            self._playback_handle.cancel()
        self._playback_handle = asyncio.get_running_loop().call_at(
            asyncio.get_running_loop().time() + (self._playback_end - now), self._playback_stopped
        )

    def _playback_stopped(self) -> None:
        self._playback_handle = None
        if self.live:
            self.emit({"type": "output_audio_buffer.stopped", "response_id": self._playback_response})

    def clear_output_audio(self) -> None:
        if self._playback_handle is not None:
            self._playback_handle.cancel()
            self._playback_handle = None
        self._playback_end = 0.0
        if self.media is not None:
            self.media.speaker.clear()
        self.emit({"type": "output_audio_buffer.cleared", "response_id": self._playback_response})

    # --- client events -----------------------------------------------------------------------

    def handle_client_text(self, text: str | bytes, sink) -> None:
        try:
            event = json.loads(text)
            if not isinstance(event, dict):
                raise ValueError
        except ValueError:
            self.error(
                {
                    "type": "invalid_request_error",
                    "code": "invalid_json",
                    "param": None,
                    "message": "The server could not parse your JSON.",
                },
                only=sink,
            )
            return
        self.handle_client_event(event, sink)

    def handle_client_event(self, event: dict, sink=None) -> None:
        if not self.live:
            return
        etype = event.get("type")
        client_event_id = event.get("event_id")
        try:
            if etype == "session.update":
                self.session = apply_update(
                    self.session, event.get("session") or {}, audio_sent=self.audio_sent
                )
                self.emit({"type": "session.updated", "session": self.session})
            elif etype == "response.create":
                if self.response_task is not None and not self.response_task.done():
                    raise ApiError(
                        400,
                        "Conversation already has an active response in progress.",
                        code="conversation_already_has_active_response",
                    )
                self.spawn(self._turn(event.get("response") or {}, explicit=True))
            elif etype == "response.cancel":
                if self.response_task is None or self.response_task.done():
                    raise ApiError(
                        400,
                        "Cancellation failed: no active response found.",
                        code="response_cancel_not_active",
                    )
                self._cancel_requested = True
            elif etype == "conversation.item.create":
                self._create_item(event.get("item") or {})
            elif etype == "conversation.item.delete":
                item_id = event.get("item_id")
                self.items = [i for i in self.items if i["id"] != item_id]
                self.emit({"type": "conversation.item.deleted", "item_id": item_id})
            elif etype == "input_audio_buffer.append":
                raw = base64.b64decode(event.get("audio") or "")
                fmt = self.session["audio"]["input"]["format"]
                per_ms = 48 if fmt.get("type") == "audio/pcm" else 8  # pcm16 24 kHz vs G.711 8 kHz
                self._input_audio_ms += len(raw) / per_ms
            elif etype == "input_audio_buffer.commit":
                if self._input_audio_ms < 100:
                    raise ApiError(
                        400,
                        "Error committing input audio buffer: buffer too small. Expected at "
                        "least 100ms of audio.",
                        code="input_audio_buffer_commit_empty",
                    )
                self.add_user_audio(ids.item_id(), self._input_audio_ms)
                self._input_audio_ms = 0.0
            elif etype == "input_audio_buffer.clear":
                self._input_audio_ms = 0.0
                self.emit({"type": "input_audio_buffer.cleared"})
            elif etype == "output_audio_buffer.clear":
                self.clear_output_audio()
            else:
                raise ApiError(
                    400,
                    f"Invalid value: '{etype}'. Supported values are: session.update, "
                    "input_audio_buffer.append, input_audio_buffer.commit, input_audio_buffer.clear, "
                    "conversation.item.create, conversation.item.delete, response.create, "
                    "response.cancel, output_audio_buffer.clear.",
                    param="type",
                    code="invalid_value",
                )
        except ApiError as err:
            self.error(err, only=sink, client_event_id=client_event_id)
        except (ValueError, TypeError, KeyError) as err:
            self.error(
                ApiError(400, f"Invalid event: {err}", code="invalid_event"),
                only=sink,
                client_event_id=client_event_id,
            )

    def _create_item(self, item: dict) -> None:
        item = copy.deepcopy(item)
        item.setdefault("id", ids.item_id())
        item["object"] = "realtime.item"
        item.setdefault("status", "completed")
        text, audio = 0, 0
        if item.get("type", "message") == "message":
            item.setdefault("type", "message")
            for part in item.get("content") or []:
                if part.get("type") in ("input_text", "text", "output_text"):
                    text += text_tokens(part.get("text", ""))
                elif part.get("type") == "input_audio":
                    raw = base64.b64decode(part.get("audio") or "")
                    audio += math.ceil(len(raw) / 48 / 100)
                    part.pop("audio", None)
        elif item["type"] == "function_call_output":
            text += text_tokens(item.get("output", ""))
        elif item["type"] == "function_call":
            text += text_tokens(item.get("arguments", "")) + text_tokens(item.get("name", ""))
        else:
            raise ApiError(
                400, f"Invalid item type: '{item['type']}'.", param="item.type", code="invalid_value"
            )
        self._add_item(item, text=text, audio=audio)

    # --- responses ---------------------------------------------------------------------------

    async def _turn(self, params: dict, explicit: bool = False) -> None:
        # VAD turns queue behind a running response; explicit response.create was refused above.
        async with self._turn_lock:
            if not self.live:
                return
            self.response_task = asyncio.current_task()
            try:
                await self._respond(params)
            finally:
                self.response_task = None

    def _reply_text(self) -> str:
        return REPLIES[self.responses % len(REPLIES)]

    async def _respond(self, params: dict) -> None:
        cfg = self.fake.config
        self._cancel_requested = False
        response_id, item_id = ids.response_id(), ids.item_id()
        modalities = params.get("output_modalities") or self.session["output_modalities"]
        audio_mode = modalities == ["audio"]
        in_conversation = params.get("conversation", "auto") != "none"
        max_out = params.get("max_output_tokens", self.session.get("max_output_tokens", "inf"))
        text = self._reply_text()
        self.responses += 1
        base_response = {
            "object": "realtime.response",
            "id": response_id,
            "conversation_id": self.conversation_id if in_conversation else None,
            "output_modalities": modalities,
            "max_output_tokens": max_out,
            "audio": {
                "output": {
                    "format": self.session["audio"]["output"]["format"],
                    "voice": self.session["audio"]["output"]["voice"],
                }
            },
            "metadata": params.get("metadata"),
        }
        self.emit(
            {
                "type": "response.created",
                "response": {
                    **base_response,
                    "status": "in_progress",
                    "status_details": None,
                    "output": [],
                    "usage": None,
                },
            }
        )
        self.emit(
            {
                "type": "rate_limits.updated",
                "rate_limits": [
                    {"name": "requests", "limit": 10000, "remaining": 9999, "reset_seconds": 0.006},
                    {"name": "tokens", "limit": 2000000, "remaining": 1995000, "reset_seconds": 0.15},
                ],
            }
        )
        part_type = "output_audio" if audio_mode else "output_text"
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        previous = self.items[-1]["id"] if self.items and in_conversation else None
        self.emit(
            {
                "type": "response.output_item.added",
                "response_id": response_id,
                "output_index": 0,
                "item": item,
            }
        )
        if in_conversation:
            self.emit({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        empty_part = {"type": part_type, "transcript": ""} if audio_mode else {"type": part_type, "text": ""}
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
        self.emit({"type": "response.content_part.added", **where, "part": empty_part})

        words = text.split(" ")
        spoken: list[str] = []
        status, status_details = "completed", None
        for i, word in enumerate(words):
            if self._cancel_requested:
                status, status_details = "cancelled", {"type": "cancelled", "reason": "client_cancelled"}
                break
            delta = word if i == 0 else " " + word
            spoken.append(delta)
            self.emit(
                {
                    "type": "response.output_audio_transcript.delta"
                    if audio_mode
                    else "response.output_text.delta",
                    **where,
                    "delta": delta,
                }
            )
            await asyncio.sleep(cfg.delta_interval_ms / 1000)
        said = "".join(spoken)
        speed = float(self.session["audio"]["output"].get("speed") or 1.0)
        duration_ms = (len(spoken) / cfg.words_per_second) * 1000 / speed if audio_mode else 0.0
        out_text = text_tokens(said)
        out_audio = math.ceil(duration_ms / 50) if audio_mode else 0
        if max_out != "inf" and isinstance(max_out, int) and out_text + out_audio > max_out:
            out_text = min(out_text, max_out)
            out_audio = max(0, max_out - out_text)
            duration_ms = out_audio * 50
            status, status_details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        if audio_mode and duration_ms > 0:
            self.play_audio(response_id, duration_ms)
            self.emit({"type": "response.output_audio.done", **where})
            self.emit({"type": "response.output_audio_transcript.done", **where, "transcript": said})
            part = {"type": part_type, "transcript": said}
        else:
            self.emit({"type": "response.output_text.done", **where, "text": said})
            part = {"type": part_type, "text": said}
        self.emit({"type": "response.content_part.done", **where, "part": part})
        item = {**item, "status": "completed" if status == "completed" else "incomplete", "content": [part]}
        self.emit(
            {"type": "response.output_item.done", "response_id": response_id, "output_index": 0, "item": item}
        )
        if in_conversation:
            self.emit({"type": "conversation.item.done", "previous_item_id": previous, "item": item})

        usage = self._usage(out_text, out_audio)
        if in_conversation:
            self.items.append(
                {"id": item_id, "role": "assistant", "text_tokens": out_text, "audio_tokens": out_audio}
            )
        response = {
            **base_response,
            "status": status,
            "status_details": status_details,
            "output": [item],
            "usage": usage,
        }
        self.send_response_done(response, scripted=False)

    def _usage(self, out_text: int, out_audio: int) -> dict:
        # The whole conversation is input again on every response; the part the model saw last
        # time is served from cache, in 64-token steps.
        in_text = text_tokens(self.session.get("instructions") or "") + MESSAGE_OVERHEAD_TOKENS
        in_audio = 0
        for item in self.items:
            in_text += item["text_tokens"] + MESSAGE_OVERHEAD_TOKENS
            in_audio += item["audio_tokens"]
        prev_text, prev_audio = self._prev_prefix
        cached_text = min(in_text, prev_text) // CACHE_CHUNK * CACHE_CHUNK
        cached_audio = min(in_audio, prev_audio) // CACHE_CHUNK * CACHE_CHUNK
        self._prev_prefix = (in_text + out_text + MESSAGE_OVERHEAD_TOKENS, in_audio + out_audio)
        input_tokens = in_text + in_audio
        output_tokens = out_text + out_audio
        return {
            "total_tokens": input_tokens + output_tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "input_token_details": {
                "text_tokens": in_text,
                "audio_tokens": in_audio,
                "image_tokens": 0,
                "cached_tokens": cached_text + cached_audio,
                "cached_tokens_details": {
                    "text_tokens": cached_text,
                    "audio_tokens": cached_audio,
                    "image_tokens": 0,
                },
            },
            "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
        }

    def send_scripted_response(self, response: dict) -> dict:
        """A scripted response (control API, scripts): announced by `response.created` as every
        response is (reference §5: `response.created` with status in_progress and usage null, then
        `response.done`), with nothing in between."""
        self.emit(
            {
                "type": "response.created",
                "response": {**response, "status": "in_progress", "status_details": None, "output": [], "usage": None},
            }
        )
        return self.send_response_done(response, scripted=True)

    def send_response_done(self, response: dict, *, scripted: bool) -> dict:
        usage = response.get("usage") or {}
        self.fake.store.record(
            ts=self.fake.now(),
            call_id=self.id,
            project_id=self.project_id,
            api_key_id=self.usage_key_id,
            model=self.session["model"],
            usage=usage,
        )
        sent_at = time.time()
        event = self.emit({"type": "response.done", "response": response})
        for key in ("input_tokens", "output_tokens", "total_tokens"):
            self.usage_totals[key] += int(usage.get(key) or 0)
        self.usage_totals["responses"] += 1
        self.response_done_log.append(
            {
                "event_id": event["event_id"],
                "response_id": response["id"],
                "status": response.get("status"),
                "sent_at": sent_at,
                "scripted": scripted,
                "usage": usage,
            }
        )
        return event

    # --- scripts -----------------------------------------------------------------------------

    def start_script(self, *, interval_ms: float, usage: dict, count: int | None) -> None:
        self.stop_script()
        self.script = {"interval_ms": interval_ms, "usage": usage, "count": count, "sent": 0}
        self._script_task = self.spawn(self._run_script(self.script))

    def stop_script(self) -> None:
        if self._script_task is not None:
            self._script_task.cancel()
            self._script_task = None
        if self.script is not None:
            self.script["stopped"] = True

    async def _run_script(self, script: dict) -> None:
        interval = script["interval_ms"] / 1000
        start = time.time() + interval
        seq = 0
        while self.live and (script["count"] is None or seq < script["count"]):
            scheduled = start + seq * interval
            delay = scheduled - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self.live:
                return
            response = {
                "object": "realtime.response",
                "id": ids.response_id(),
                "status": "completed",
                "status_details": None,
                "output": [],
                "conversation_id": self.conversation_id,
                "output_modalities": self.session["output_modalities"],
                "max_output_tokens": self.session.get("max_output_tokens", "inf"),
                "audio": {
                    "output": {
                        "format": self.session["audio"]["output"]["format"],
                        "voice": self.session["audio"]["output"]["voice"],
                    }
                },
                "usage": script["usage"],
                # Lets a benchmark measure delivery delay against the schedule, not the send.
                "metadata": {"fake_scripted_seq": str(seq), "fake_scheduled_at": f"{scheduled:.6f}"},
            }
            self.send_scripted_response(response)
            seq += 1
            script["sent"] = seq

    # --- end ---------------------------------------------------------------------------------

    def expire(self) -> None:
        if not self.live:
            return
        minutes = self.session_cap_seconds / 60
        shown = f"{minutes:g} minutes" if minutes >= 1 else f"{self.session_cap_seconds:g} seconds"
        self.error(
            {
                "type": "invalid_request_error",
                "code": "session_expired",
                "param": None,
                "message": f"Your session hit the maximum duration of {shown}.",
            }
        )
        self.spawn(self.end("expired", code=1001, reason_text="Your session hit the maximum duration."))

    async def end(self, reason: str, *, code: int = 1000, reason_text: str = "") -> None:
        if not self.live:
            return
        self.state = "ended"
        self.end_reason = reason
        self.ended_at = time.time()
        for handle in (self._cap_handle, self._connect_handle):
            if handle is not None:
                handle.cancel()
        if self._playback_handle is not None:
            self._playback_handle.cancel()
        self.stop_script()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            sink.close(code, reason_text)
        if self.datachannel is not None and self.datachannel not in sinks:
            self.datachannel.close()
        if self.media is not None:
            try:
                await asyncio.wait_for(self.media.close(), timeout=2)
            except (TimeoutError, Exception):
                log.debug("media close failed", exc_info=True)
        self.ended.set()
