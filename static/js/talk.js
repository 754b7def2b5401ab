// Talk page: one voice call from the browser, through our SDP proxy (POST /api/calls/).
//
// The browser never holds an OpenAI credential: it sends its SDP offer to us, we create the call
// upstream and hand back the answer. Audio then flows browser <-> OpenAI directly; the `oai-events`
// data channel carries the assistant's events (its transcript) to this page.
//
// The server is the authority on the call: it may end it (credits, maximum length, staff), so the
// page listens to `live:call` events (static/js/live.js) and polls GET /api/calls/<id> as a fallback.
//
// Nothing happens before the server watches the call: it is created with turn detection off, and
// the page sends nothing on the data channel. Once the supervisor has attached, it turns listening
// on and asks for the greeting; the page shows "connecting" until the call's `watched` is true (or
// the session reports turn detection on), then "listening".
(function () {
  "use strict";

  const root = document.querySelector("[data-talk]");
  if (!root) return;

  const $ = (sel) => root.querySelector(sel);
  const els = {
    form: $("[data-talk-form]"),
    assistant: $("[data-testid=assistant-select]"),
    start: $("[data-testid=start-call]"),
    stop: $("[data-testid=stop-call]"),
    state: $("[data-testid=call-state]"),
    stateText: $("[data-call-state-text]"),
    alert: $("[data-testid=call-alert]"),
    transcript: $("[data-testid=transcript]"),
    transcriptEmpty: $("[data-transcript-empty]"),
    elapsed: $("[data-testid=elapsed]"),
    timeLeft: $("[data-testid=time-left]"),
    creditsHeld: $("[data-testid=credits-held]"),
    creditsUsed: $("[data-testid=credits-used]"),
    tokens: $("[data-testid=tokens]"),
    warning: $("[data-testid=call-warning]"),
    callLink: $("[data-call-link]"),
    audio: $("[data-remote-audio]"),
    assistantInfo: $("[data-assistant-info]"),
    coverage: $("[data-testid=coverage]"),
    startBlocked: $("[data-testid=start-blocked]"),
    startBlockedText: $("[data-start-blocked-text]"),
    rate: $("[data-testid=rate]"),
    rateTimeLeft: $("[data-testid=rate-time-left]"),
    summary: $("[data-testid=call-summary]"),
  };
  const fmt = (n) => (window.liveFigures ? window.liveFigures.format(n) : Number(n).toLocaleString());
  const buyUrl = root.dataset.buyUrl || "";
  const historyUrl = root.dataset.historyUrl || "";
  const POLL_MS = 3000;
  const FAST_POLL_MS = 500; // until the supervisor watches the call
  const REMOTE_END_CHECKS = 10; // ~3 s of asking the server why a call closed
  const FINAL_STATES = new Set(["ended", "killed", "expired", "failed"]);

  // Words for the states the page shows; the token itself stays in data-state for scripts and tests.
  const STATE_WORDS = {
    idle: "Ready",
    "requesting-microphone": "Waiting for the microphone…",
    connecting: "Connecting…",
    listening: "Listening — speak now",
    ending: "Ending the call…",
    ended: "Call ended",
    failed: "Could not start the call",
  };

  // End reasons recorded by the server (a call's `end_reason`), in words: the page renders the
  // server's own table into #end-reasons so the Talk page, History and detail say the same thing.
  const END_REASONS = Object.assign({
    connection_lost: "The connection was lost.",
    session_expired: "The voice service's 60-minute limit was reached.",
  }, readJson("end-reasons"));

  function readJson(id) {
    const el = document.getElementById(id);
    if (!el) return {};
    try { return JSON.parse(el.textContent) || {}; } catch (err) { return {}; }
  }

  let call = null; // { id, peer, channel, mic, pollTimer, tickTimer, deadline, startedAt, final }

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function setState(state, words) {
    els.state.dataset.state = state;
    els.state.textContent = state;
    els.state.className = "badge " + ({ listening: "ok", failed: "err", ending: "warn", connecting: "warn" }[state] || "");
    els.stateText.textContent = words || STATE_WORDS[state] || "";
    root.dataset.callState = state;
  }

  function showAlert(kind, message, link) {
    els.alert.hidden = false;
    els.alert.className = "message " + kind;
    els.alert.dataset.kind = kind;
    els.alert.textContent = message;
    if (link && link.href) {
      els.alert.append(" ");
      const a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      a.dataset.testid = link.testid || "alert-link";
      els.alert.append(a);
    }
  }

  function clearAlert() {
    els.alert.hidden = true;
    els.alert.textContent = "";
    delete els.alert.dataset.code;
  }

  function fmtDuration(seconds) {
    if (seconds == null || !isFinite(seconds)) return "–";
    seconds = Math.max(0, Math.round(seconds));
    const m = Math.floor(seconds / 60);
    const s = seconds % 60;
    return `${m}:${String(s).padStart(2, "0")}`;
  }

  // The supervisor warns once before it cuts a call off: `warning` on its live pushes ("credits" or
  // "time"), and a `warning` event in the call's timeline (what the polling fallback sees).
  const WARNING_WORDS = {
    credits: "Your credits for this call are nearly used up: it will end when they run out.",
    time: "The call is about to reach its maximum length and will end shortly.",
  };

  function showWarning(kind) {
    if (!els.warning || els.warning.dataset.kind === kind) return;
    els.warning.dataset.kind = kind;
    els.warning.textContent = WARNING_WORDS[kind] || String(kind);
    els.warning.hidden = false;
  }

  function hideWarning() {
    if (!els.warning) return;
    els.warning.hidden = true;
    els.warning.textContent = "";
    delete els.warning.dataset.kind;
  }

  function warningOf(figures) {
    if (figures.warning) return String(figures.warning);
    const events = Array.isArray(figures.events) ? figures.events : [];
    const event = events.find((e) => e && e.kind === "warning");
    if (!event) return null;
    return /credit/i.test(event.detail || "") ? "credits" : "time";
  }

  function endReasonWords(reason) {
    if (!reason) return "";
    return END_REASONS[reason] || (reason.charAt(0).toUpperCase() + reason.slice(1)).replace(/_/g, " ") + ".";
  }

  // --- errors from POST /api/calls/ -------------------------------------------------------------

  async function readError(response) {
    let code = "";
    let message = "";
    try {
      const body = await response.json();
      const error = body && body.error ? body.error : body;
      code = (error && error.code) || "";
      message = (error && (error.message || error.detail)) || "";
    } catch (err) { /* not JSON: keep the status */ }
    return { status: response.status, code, message, retryAfter: response.headers.get("Retry-After") };
  }

  function showStartError(error) {
    const { status, code, message, retryAfter } = error;
    els.alert.dataset.code = code || String(status);
    const wait = retryAfter ? ` Try again in ${retryAfter} s.` : "";
    if (code === "insufficient_credits") {
      showAlert("error", `Not enough credits to start this call. ${message}`.trim(),
        buyUrl ? { href: buyUrl, text: "Buy credits", testid: "buy-credits-link" } : null);
    } else if (code === "wallet_blocked") {
      showAlert("error", `Your credits are blocked, so no call can start. ${message}`.trim(),
        buyUrl ? { href: buyUrl, text: "Buy credits", testid: "buy-credits-link" } : null);
    } else if (code === "concurrency_limit") {
      showAlert("warning", `Limit reached: you already have as many calls running as this assistant allows. ${message}`.trim(),
        historyUrl ? { href: historyUrl, text: "See your calls" } : null);
    } else if (code === "rate_limited" || status === 429) {
      showAlert("warning", `Limit reached: too many calls started in a short time.${wait} ${message}`.trim());
    } else if (code === "upstream_unavailable" || status === 503) {
      showAlert("error", `The voice service is unavailable right now; nothing was charged.${wait} ${message}`.trim());
    } else if (code === "upstream_error" || status === 502) {
      showAlert("error", `The voice service refused the call; nothing was charged. ${message}`.trim());
    } else if (code === "email_unverified") {
      showAlert("error", "Please confirm your email address before starting a call.");
    } else if (code === "account_suspended") {
      showAlert("error", `Your account is suspended. ${message}`.trim());
    } else if (code === "invalid_offer") {
      showAlert("error", `Your browser's call offer was refused. ${message}`.trim());
    } else if (status === 401 || status === 403) {
      showAlert("error", message || "You are not allowed to start a call. Please sign in again.");
    } else {
      showAlert("error", message || `The call could not start (HTTP ${status}).`);
    }
  }

  // --- the call ---------------------------------------------------------------------------------

  function waitForIceGathering(peer, timeoutMs) {
    // Our answerer (OpenAI, or aiortc in tests) takes no trickled candidates: the offer carries them.
    if (peer.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { peer.removeEventListener("icegatheringstatechange", check); clearTimeout(timer); resolve(); };
      const check = () => { if (peer.iceGatheringState === "complete") done(); };
      const timer = setTimeout(done, timeoutMs);
      peer.addEventListener("icegatheringstatechange", check);
    });
  }

  async function start(event) {
    if (event) event.preventDefault();
    if (call) return;
    const assistantId = els.assistant.value;
    if (!assistantId) return;
    clearAlert();
    resetFigures();
    els.start.disabled = true;
    els.assistant.disabled = true;
    call = { id: null, final: false };
    const current = call;

    setState("requesting-microphone");
    let mic;
    try {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        throw Object.assign(new Error("This browser cannot capture audio here (a secure https page is needed)."), { name: "NotSupportedError" });
      }
      mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      els.alert.dataset.code = "microphone_denied";
      if (err.name === "NotAllowedError" || err.name === "SecurityError") {
        showAlert("error", "Microphone access was denied. Allow the microphone for this site in your browser, then press Start again.");
      } else if (err.name === "NotFoundError" || err.name === "OverconstrainedError") {
        els.alert.dataset.code = "microphone_missing";
        showAlert("error", "No microphone was found. Connect one, then press Start again.");
      } else {
        showAlert("error", `The microphone could not be opened: ${err.message || err.name}`);
      }
      finish("failed");
      return;
    }
    if (call !== current) { mic.getTracks().forEach((t) => t.stop()); return; }
    current.mic = mic;

    setState("connecting");
    const peer = new RTCPeerConnection();
    current.peer = peer;
    peer.addEventListener("track", (e) => { els.audio.srcObject = e.streams[0] || new MediaStream([e.track]); });
    peer.addEventListener("connectionstatechange", () => onPeerState(current));
    mic.getTracks().forEach((track) => peer.addTrack(track, mic));
    const channel = peer.createDataChannel("oai-events");
    current.channel = channel;
    // Nothing is sent on the channel: the supervisor starts the greeting once it watches the call.
    channel.addEventListener("open", () => markConnected(current));
    channel.addEventListener("message", (e) => onServerEvent(e.data));
    channel.addEventListener("close", () => { if (!current.final && call === current) onRemoteEnd(current, "connection_lost"); });

    let response;
    try {
      const offer = await peer.createOffer();
      await peer.setLocalDescription(offer);
      await waitForIceGathering(peer, 2000);
      response = await fetch(`/api/calls/?assistant=${encodeURIComponent(assistantId)}`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/sdp", Accept: "application/sdp, application/json", "X-CSRFToken": csrfToken() },
        body: peer.localDescription.sdp,
      });
    } catch (err) {
      showAlert("error", `The call could not start: ${err.message || err}`);
      finish("failed");
      return;
    }
    if (call !== current) return;
    if (response.status !== 201) {
      showStartError(await readError(response));
      finish("failed");
      return;
    }
    current.id = response.headers.get("X-Call-Id") || (response.headers.get("Location") || "").split("/").filter(Boolean).pop();
    const answer = await response.text();
    root.dataset.callId = current.id || "";
    if (current.id && els.callLink) {
      els.callLink.href = els.callLink.dataset.template.replace("__id__", encodeURIComponent(current.id));
      els.callLink.hidden = false;
    }
    els.stop.disabled = false;
    try {
      await peer.setRemoteDescription({ type: "answer", sdp: answer });
    } catch (err) {
      showAlert("error", `The call's answer could not be applied: ${err.message || err}`);
      await hangup(current);
      finish("failed");
      return;
    }
    refresh(current);
    current.pollTimer = setInterval(() => refresh(current), current.listening ? POLL_MS : FAST_POLL_MS);
  }

  function markConnected(current) {
    if (call !== current || current.final || current.connected) return;
    current.connected = true;
    current.connectedAt = performance.now();
    if (!current.listening) setState("connecting", "Connected — the assistant starts listening in a moment…");
    current.tickTimer = setInterval(() => tick(current), 250);
    tick(current);
  }

  // The supervisor watches the call: it turned listening on and asked for the greeting.
  function markListening(current) {
    if (call !== current || current.final || current.ending || current.listening) return;
    current.listening = true;
    setState("listening");
    if (current.pollTimer) {
      clearInterval(current.pollTimer);
      current.pollTimer = setInterval(() => refresh(current), POLL_MS);
    }
  }

  function onPeerState(current) {
    if (call !== current || current.final) return;
    const state = current.peer.connectionState;
    if (state === "connected" && current.channel && current.channel.readyState === "open") markConnected(current);
    if (state === "failed" || state === "closed") onRemoteEnd(current, "connection_lost");
  }

  // The call went away without our Stop: ask the server why, and make sure it is hung up.
  async function onRemoteEnd(current, fallbackReason) {
    if (current.final || current.ending) return;
    current.ending = true;
    setState("ending", "The call was closed; checking why…");
    // When the server cut the call off (supervisor, staff), OpenAI closes the connection as soon as
    // it is asked to, a moment before the server records why: give it that moment.
    let figures = null;
    for (let i = 0; i < REMOTE_END_CHECKS; i += 1) {
      if (i) await new Promise((r) => setTimeout(r, 300));
      figures = await fetchCall(current);
      if (!figures || FINAL_STATES.has(figures.state) || figures.state === "ending") break;
    }
    if (figures && !FINAL_STATES.has(figures.state) && figures.state !== "ending") {
      await hangup(current); // do not let a call we can no longer hear keep running on credits
    }
    const reason = (figures && figures.end_reason) || fallbackReason;
    showEnded(current, reason, figures);
  }

  async function stop(event) {
    if (event) event.preventDefault();
    const current = call;
    if (!current || current.final || current.ending) return;
    current.ending = true;
    current.userStopped = true;
    els.stop.disabled = true;
    setState("ending");
    if (current.id) await hangup(current);
    closePeer(current);
    const figures = await settleFigures(current);
    showEnded(current, (figures && figures.end_reason) || "user_hangup", figures);
  }

  async function hangup(current) {
    if (!current.id) return;
    try {
      await fetch(`/api/calls/${encodeURIComponent(current.id)}/hangup`, {
        method: "POST",
        credentials: "same-origin",
        keepalive: true,
        headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
      });
    } catch (err) { /* the server's sweep ends it at its expected end anyway */ }
  }

  // After Stop, the server records the end within a moment: wait briefly for its figures.
  async function settleFigures(current) {
    let figures = null;
    for (let i = 0; i < 6; i += 1) {
      figures = await fetchCall(current);
      // `ending` is enough: the hangup is recorded; settlement may come later (the sweep).
      if (!figures || figures.state === "ending" || FINAL_STATES.has(figures.state)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    return figures;
  }

  function closePeer(current) {
    clearInterval(current.pollTimer);
    clearInterval(current.tickTimer);
    if (current.channel) { try { current.channel.close(); } catch (err) { /* closed */ } }
    if (current.peer) { try { current.peer.close(); } catch (err) { /* closed */ } }
    if (current.mic) current.mic.getTracks().forEach((t) => t.stop());
    els.audio.srcObject = null;
  }

  function showEnded(current, reason, figures) {
    if (current.final) return;
    current.final = true;
    closePeer(current);
    if (figures) applyFigures(current, figures);
    if (current.connectedAt && (!figures || figures.duration_seconds == null)) {
      els.elapsed.textContent = fmtDuration((performance.now() - current.connectedAt) / 1000);
    }
    els.timeLeft.textContent = "–";
    hideWarning();
    const words = endReasonWords(reason);
    root.dataset.endReason = reason || "";
    const failed = figures && figures.state === "failed";
    setState(failed ? "failed" : "ended", words || STATE_WORDS.ended);
    if (!current.userStopped && words) showAlert(failed ? "error" : "warning", words);
    showSummary(current, figures);
    finish(null);
    // The hold is settled a moment after the end: ask for the wallet now and shortly after (with
    // Redis the server's push usually comes first; without it live.js polls as well).
    if (window.liveFigures) {
      window.liveFigures.refresh();
      setTimeout(window.liveFigures.refresh, 700);
    }
  }

  // After the call: what it cost, in minutes and credits a minute.
  function showSummary(current, figures) {
    if (!els.summary) return;
    const seconds = figures && figures.duration_seconds != null ? Number(figures.duration_seconds) : null;
    const credits = figures && figures.credits_charged != null ? Number(figures.credits_charged)
      : (current.creditsUsed != null ? current.creditsUsed : null);
    if (seconds == null || credits == null) { els.summary.hidden = true; return; }
    const minutes = seconds / 60;
    const rate = minutes > 0 ? ` (${(credits / minutes).toFixed(1)} credits a minute)` : "";
    els.summary.textContent = `This call: ${fmt(credits)} credit${credits === 1 ? "" : "s"} for ${fmtDuration(seconds)}${rate}.`;
    els.summary.hidden = false;
  }

  function finish(state) {
    if (state) setState(state);
    if (call) {
      call.final = true;
      closePeer(call);
    }
    call = null;
    els.assistant.disabled = false;
    els.stop.disabled = true;
    updateStartable();
  }

  // --- figures from the server ------------------------------------------------------------------

  async function fetchCall(current) {
    if (!current.id) return null;
    try {
      const response = await fetch(`/api/calls/${encodeURIComponent(current.id)}`, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (!response.ok) return null;
      return await response.json();
    } catch (err) {
      return null;
    }
  }

  async function refresh(current) {
    const figures = await fetchCall(current);
    if (figures) onFigures(current, figures);
  }

  function onFigures(current, figures) {
    if (call !== current || current.final || String(figures.id) !== String(current.id)) return;
    applyFigures(current, figures);
    if (figures.watched && current.connected) markListening(current);
    // `ending` counts: the server (supervisor, staff, sweep) has hung up and recorded why.
    if ((FINAL_STATES.has(figures.state) || figures.state === "ending") && !current.ending) {
      current.ending = true;
      showEnded(current, figures.end_reason, figures);
    }
  }

  function applyFigures(current, figures) {
    if (figures.credits_held != null) {
      current.creditsHeld = Number(figures.credits_held);
      els.creditsHeld.textContent = current.creditsHeld.toLocaleString();
    }
    // Live pushes (from memory) and polls (from the database) interleave; usage only grows, so the
    // larger figure is the newer one.
    if (figures.tokens) {
      const total = Object.values(figures.tokens).reduce((sum, n) => sum + (Number(n) || 0), 0);
      current.tokensTotal = Math.max(current.tokensTotal || 0, total);
      els.tokens.textContent = current.tokensTotal.toLocaleString();
    }
    if (figures.credits_used != null || figures.credits_charged != null) {
      const used = figures.credits_charged != null ? Number(figures.credits_charged) : Number(figures.credits_used);
      current.creditsUsed = figures.credits_charged != null ? used : Math.max(current.creditsUsed || 0, used);
    }
    if (current.creditsUsed != null) {
      const held = current.creditsHeld != null ? ` of ${current.creditsHeld.toLocaleString()}` : "";
      els.creditsUsed.textContent = `${current.creditsUsed.toLocaleString()}${held}`;
      els.creditsUsed.classList.toggle("low", current.creditsHeld != null && current.creditsUsed >= current.creditsHeld * 0.9);
    }
    if (figures.seconds_left != null && !FINAL_STATES.has(figures.state)) {
      current.deadline = performance.now() + Number(figures.seconds_left) * 1000;
    }
    if (figures.duration_seconds != null && FINAL_STATES.has(figures.state)) {
      els.elapsed.textContent = fmtDuration(Number(figures.duration_seconds));
    }
    if (figures.started_at && !current.serverStartedAt) {
      // Elapsed time is the server's (it is what is billed); keep our own clock's offset from it.
      const started = Date.parse(figures.started_at);
      if (!Number.isNaN(started)) current.serverStartedAt = started;
    }
    const warning = warningOf(figures);
    if (warning && !FINAL_STATES.has(figures.state) && !current.ending) showWarning(warning);
    tick(current);
  }

  function tick(current) {
    if (current.final) return;
    let elapsed = null;
    if (current.serverStartedAt) elapsed = (Date.now() - current.serverStartedAt) / 1000;
    else if (current.connectedAt) elapsed = (performance.now() - current.connectedAt) / 1000;
    if (elapsed != null) els.elapsed.textContent = fmtDuration(elapsed);
    showRate(current, elapsed);
    if (current.deadline != null) {
      const left = (current.deadline - performance.now()) / 1000;
      els.timeLeft.textContent = fmtDuration(left);
      els.timeLeft.classList.toggle("low", left < 30);
    }
  }

  // Credits a minute so far, and how long the rest of the hold lasts at that rate (never past the
  // call's own time left). Shown once the call has run 10 s and used a credit.
  function showRate(current, elapsed) {
    if (!els.rate) return;
    if (elapsed == null || elapsed < 10 || !current.creditsUsed) {
      els.rate.textContent = "–";
      els.rateTimeLeft.textContent = "–";
      return;
    }
    const perMinute = current.creditsUsed / (elapsed / 60);
    els.rate.textContent = perMinute.toFixed(1);
    if (current.creditsHeld != null && perMinute > 0) {
      let left = Math.max(current.creditsHeld - current.creditsUsed, 0) / perMinute * 60;
      if (current.deadline != null) left = Math.min(left, Math.max((current.deadline - performance.now()) / 1000, 0));
      els.rateTimeLeft.textContent = fmtDuration(left);
    }
  }

  function resetFigures() {
    els.elapsed.textContent = "0:00";
    els.timeLeft.textContent = "–";
    els.creditsHeld.textContent = "–";
    els.creditsUsed.textContent = "–";
    els.creditsUsed.classList.remove("low");
    els.tokens.textContent = "–";
    if (els.rate) { els.rate.textContent = "–"; els.rateTimeLeft.textContent = "–"; }
    if (els.summary) els.summary.hidden = true;
    hideWarning();
    els.timeLeft.classList.remove("low");
    els.transcript.querySelectorAll("[data-line]").forEach((el) => el.remove());
    if (els.transcriptEmpty) els.transcriptEmpty.hidden = false;
    if (els.callLink) els.callLink.hidden = true;
    delete root.dataset.endReason;
    delete root.dataset.callId;
  }

  document.addEventListener("live:call", (event) => {
    if (call && event.detail) onFigures(call, event.detail);
  });

  // --- transcript from the data channel ---------------------------------------------------------

  function transcriptLine(key, who) {
    let line = els.transcript.querySelector(`[data-line="${CSS.escape(key)}"]`);
    if (!line) {
      if (els.transcriptEmpty) els.transcriptEmpty.hidden = true;
      line = document.createElement("p");
      line.dataset.line = key;
      line.dataset.testid = "transcript-line";
      line.className = "line " + who;
      const speaker = document.createElement("span");
      speaker.className = "speaker";
      speaker.textContent = who === "user" ? "You" : "Assistant";
      const text = document.createElement("span");
      text.className = "text";
      line.append(speaker, text);
      els.transcript.append(line);
    }
    return line;
  }

  function onServerEvent(raw) {
    let event;
    try { event = JSON.parse(raw); } catch (err) { return; }
    const key = (event.item_id || event.response_id || "response") + ":" + (event.content_index || 0);
    switch (event.type) {
      case "response.output_audio_transcript.delta":
      case "response.output_text.delta": {
        const text = transcriptLine(key, "assistant").querySelector(".text");
        text.textContent += event.delta || "";
        break;
      }
      case "response.output_audio_transcript.done":
      case "response.output_text.done": {
        const line = transcriptLine(key, "assistant");
        const final = event.transcript != null ? event.transcript : event.text;
        if (final != null) line.querySelector(".text").textContent = final;
        line.dataset.done = "true";
        break;
      }
      case "conversation.item.input_audio_transcription.completed": {
        const line = transcriptLine((event.item_id || "input") + ":user", "user");
        line.querySelector(".text").textContent = event.transcript || "";
        line.dataset.done = "true";
        break;
      }
      case "session.updated": {
        // The supervisor's own session.update turns turn detection on (the call starts without it).
        const audio = (event.session && event.session.audio) || {};
        if (call && audio.input && audio.input.turn_detection) markListening(call);
        break;
      }
      case "error":
        if (event.error && event.error.code === "session_expired") onRemoteEnd(call, "session_expired");
        break;
      default:
        break;
    }
    els.transcript.scrollTop = els.transcript.scrollHeight;
  }

  // --- wiring -----------------------------------------------------------------------------------

  function describeAssistant() {
    const option = els.assistant.selectedOptions[0];
    if (!option || !option.value || !els.assistantInfo) return;
    const minutes = Math.round(Number(option.dataset.maxCallSeconds || 0) / 60);
    const parts = [];
    if (minutes) parts.push(`up to ${minutes} min per call`);
    if (option.dataset.voice) parts.push(`voice ${option.dataset.voice}`);
    if (option.dataset.minCredits) parts.push(`needs at least ${Number(option.dataset.minCredits).toLocaleString()} credits`);
    els.assistantInfo.textContent = parts.join(" · ");
    describeCoverage(option);
    updateStartable();
  }

  // What the available credits buy with this assistant, before the call: from the worst case (the
  // hold rate) to the typical rate (the server's metering of its recent calls).
  function fmtMinutes(value) {
    // Rounded down: never promise more than the credits buy.
    return value >= 10 ? String(Math.floor(value)) : String(Math.floor(value * 10) / 10);
  }

  // Start only when the available credits cover the assistant's minimum; otherwise say why, with a
  // Buy link (the server refuses the call anyway: this saves the round trip and the microphone).
  function updateStartable() {
    const option = els.assistant.selectedOptions[0];
    let blocked = "";
    if (option && option.value && els.coverage && els.coverage.dataset.availableCredits !== "") {
      const available = Number(els.coverage.dataset.availableCredits);
      const required = Math.max(Number(option.dataset.minCredits || 0), 1);
      if (available < required) {
        blocked = `You have ${fmt(Math.max(available, 0))} credits; a call with ${option.textContent.trim()} needs at least ${fmt(required)}.`;
      }
    }
    if (els.startBlocked) {
      els.startBlocked.hidden = !blocked;
      els.startBlockedText.textContent = blocked;
    }
    root.dataset.startBlocked = blocked ? "true" : "false";
    if (!call) els.start.disabled = !els.assistant.value || !!blocked;
  }

  function describeCoverage(option) {
    if (!els.coverage) return;
    const available = Number(els.coverage.dataset.availableCredits);
    const worst = Number(option.dataset.worstCreditsPerMinute);
    const typical = Number(option.dataset.typicalCreditsPerMinute);
    const maxMinutes = Number(option.dataset.maxCallSeconds || 0) / 60;
    if (!els.coverage.dataset.availableCredits || !worst || !typical || !maxMinutes) {
      els.coverage.textContent = "";
      return;
    }
    const minCredits = Number(option.dataset.minCredits || 0);
    if (available < minCredits) {
      els.coverage.textContent = `You have ${fmt(Math.max(available, 0))} credits: not enough for a call with this assistant.`;
      return;
    }
    const low = Math.min(available / worst, maxMinutes);
    const high = Math.min(available / typical, maxMinutes);
    const range = fmtMinutes(low) === fmtMinutes(high) ? fmtMinutes(low) : `${fmtMinutes(low)}–${fmtMinutes(high)}`;
    const capped = high >= maxMinutes ? ` (a call lasts at most ${fmtMinutes(maxMinutes)} min)` : "";
    els.coverage.textContent = `Your ${fmt(available)} credits cover ≈ ${range} min with this assistant${capped}.`;
    els.coverage.title = `${fmtMinutes(low)} min if every minute costs the most (${fmt(worst)} credits a minute); `
      + `${fmtMinutes(high)} min at this assistant's typical rate (${fmt(typical)} credits a minute).`;
  }

  // Every change of the wallet (live.js: a push, a poll or another tab) re-says what it buys.
  document.addEventListener("wallet:figures", (event) => {
    if (!els.coverage || !event.detail || event.detail.available == null) return;
    els.coverage.dataset.availableCredits = String(event.detail.available);
    describeAssistant();
  });

  els.form.addEventListener("submit", start);
  els.stop.addEventListener("click", stop);
  els.assistant.addEventListener("change", describeAssistant);
  // Leaving the page ends the call: nobody would hear it, and it would keep spending credits.
  window.addEventListener("pagehide", () => { if (call && call.id && !call.final) hangup(call); });

  describeAssistant();
  setState("idle");
  root.dataset.ready = "true";
})();
