"""Debian's Chromium calling the fake directly with an ephemeral key (key mode): CORS, SDP, data channel."""

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# What a Talk page does: microphone track, oai-events channel, response.create once it opens.
CALL_JS = """async ({base, key}) => {
  const pc = new RTCPeerConnection();
  const events = [];
  const dc = pc.createDataChannel("oai-events");
  dc.onopen = () => dc.send(JSON.stringify({type: "response.create"}));
  dc.onmessage = (e) => events.push(JSON.parse(e.data));
  pc.ontrack = (e) => { const a = new Audio(); a.srcObject = e.streams[0]; a.play().catch(() => {}); };
  const mic = await navigator.mediaDevices.getUserMedia({audio: true});
  pc.addTrack(mic.getAudioTracks()[0], mic);
  await pc.setLocalDescription(await pc.createOffer());
  const resp = await fetch(base + "/realtime/calls", {method: "POST", body: pc.localDescription.sdp,
      headers: {Authorization: "Bearer " + key, "Content-Type": "application/sdp"}});
  const location = resp.headers.get("Location");
  await pc.setRemoteDescription({type: "answer", sdp: await resp.text()});
  const t0 = Date.now();
  while (!events.some(e => e.type === "response.done") && Date.now() - t0 < 10000) {
    await new Promise(r => setTimeout(r, 50));
  }
  await new Promise(r => setTimeout(r, 500));
  let energy = 0;
  (await pc.getStats()).forEach(s => { if (s.type === "inbound-rtp" && s.kind === "audio") energy = s.totalAudioEnergy; });
  window.fakeCall = {pc, dc};
  return {status: resp.status, location, events, energy, state: pc.connectionState};
}"""


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium")
async def test_chromium_talks_to_the_fake_with_an_ephemeral_key(client, fake_openai):
    from playwright.async_api import async_playwright

    secret = client.realtime.client_secrets.create()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page()
            # Another origin than the fake's base URL, so the request is cross-origin as in production.
            await page.goto(fake_openai.root_url.replace("127.0.0.1", "localhost") + "/_fake/health")
            result = await page.evaluate(CALL_JS, {"base": fake_openai.base_url, "key": secret.value})
            assert result["status"] == 201 and result["state"] == "connected"
            call_id = result["location"].rsplit("/", 1)[-1]
            types = [e["type"] for e in result["events"]]
            assert types[0] == "session.created"
            assert "response.output_audio_transcript.delta" in types
            done = next(e for e in result["events"] if e["type"] == "response.done")
            transcript = next(
                e for e in result["events"] if e["type"] == "response.output_audio_transcript.done"
            )
            assert transcript["transcript"] and done["response"]["usage"]["output_tokens"] > 0
            assert result["energy"] > 0  # the assistant's audio reached the browser

            client.realtime.calls.hangup(call_id)
            # Chromium keeps connectionState "connected" until ICE consent fails seconds later (as
            # with OpenAI); the data channel closing is the prompt signal.
            await page.wait_for_function("window.fakeCall.dc.readyState === 'closed'", timeout=1000)
        finally:
            await browser.close()
