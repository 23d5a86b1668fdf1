// beatedit listening page: the user's own song -> N variations (ranked by the reward model) -> pick the best.
// Shown only when the server was started with --uploads (GET /api/health says "uploads": true).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { token: null, players: [], picked: false, busy: false, listen: null };
  window.beateditUploads = state; // read-only view for tests / debugging

  function say(msg) { $("upload-status").textContent = msg || ""; }

  function describe(body) {
    if (!body) return "request failed";
    if (Array.isArray(body.detail)) return body.detail.map((d) => `${d.field}: ${d.message}`).join("; ");
    return body.detail || body.error || "request failed";
  }

  function heard(el) {
    let s = 0;
    for (let i = 0; i < el.played.length; i++) s += el.played.end(i) - el.played.start(i);
    return Math.round(s * 1000) / 1000;
  }

  // the listening gate, as for A/B votes: a variation is heard past its first seam (+ margin) or for
  // min(min_listen_s, heard_fraction x its length) seconds; "this one is the best" unlocks once all are heard
  function isHeard(p) {
    const L = state.listen;
    if (!L || !(L.min_listen_s > 0)) return true;
    const h = heard(p.audio);
    if (p.firstSeam !== null && p.firstSeam !== undefined && h >= p.firstSeam + L.seam_margin_s) return true;
    return h >= Math.min(L.min_listen_s, L.heard_fraction * p.duration);
  }

  function updateGate() {
    const todo = state.players.filter((p) => !isHeard(p)).map((p) => p.k);
    const open = todo.length === 0;
    document.querySelectorAll("#variations .pick").forEach((b) => { b.disabled = state.picked || !open; });
    $("upload-gate").textContent = open || state.picked ? "" :
      `Listen to variation${todo.length > 1 ? "s" : ""} ${todo.join(", ")} past the first seam (or ${state.listen.min_listen_s} s) to pick.`;
  }

  // side by side: starting one variation pauses the others and continues at the same time position
  function listen(k) {
    const me = state.players[k - 1];
    let t = 0;
    for (const p of state.players) {
      if (p !== me && !p.audio.paused) { t = p.audio.currentTime; p.audio.pause(); }
      p.item.classList.toggle("playing", p === me);
    }
    if (t > 0) { try { me.audio.currentTime = Math.min(t, isFinite(me.audio.duration) ? me.audio.duration : t); } catch (e) { /* not loaded */ } }
    const pr = me.audio.play();
    if (pr && pr.catch) pr.catch((e) => say(`cannot play variation ${k}: ${e.message}`));
  }

  function show(variations) {
    const list = $("variations");
    list.textContent = "";
    state.players = [];
    for (const v of variations) {
      const li = document.createElement("li");
      li.dataset.k = String(v.k);
      const label = document.createElement("span");
      label.textContent = `Variation ${v.k} · ${v.duration.toFixed(1)} s · model score ${v.score.toFixed(3)} `;
      const audio = document.createElement("audio");
      audio.controls = true; audio.preload = "auto"; audio.src = v.audio;
      const play = document.createElement("button");
      play.type = "button"; play.className = "listen"; play.textContent = `▶ Listen to ${v.k}`;
      play.addEventListener("click", () => listen(v.k));
      const pick = document.createElement("button");
      pick.type = "button"; pick.className = "pick"; pick.textContent = `This one is the best`;
      pick.addEventListener("click", () => choose(v.k));
      li.append(label, audio, play, pick);
      list.append(li);
      state.players.push({ k: v.k, audio, item: li, firstSeam: v.first_seam, duration: v.duration });
      audio.addEventListener("timeupdate", updateGate);
    }
    updateGate();
  }

  async function choose(k) {
    if (!state.token || state.picked || state.busy) return;
    state.busy = true;
    try {
      const listened = state.players.map((p) => heard(p.audio));
      const resp = await fetch("/api/upload/pick", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: state.token, choice: k, listened }) });
      const body = await resp.json().catch(() => null);
      if (resp.status === 201) {
        state.picked = true;
        state.players.forEach((p) => { p.audio.pause(); p.item.classList.toggle("picked", p.k === k); });
        document.querySelectorAll("#variations .pick").forEach((b) => { b.disabled = true; });
        say(`Thanks: variation ${k} saved as preferred over the other ${body.preferences}.`);
      } else {
        say(`pick not saved: ${describe(body)}`);
      }
    } catch (e) {
      say(`pick not saved (network): ${e.message}`);
    } finally {
      state.busy = false;
    }
  }

  async function submit(ev) {
    ev.preventDefault();
    if (state.busy) return;
    const file = $("upload-file").files[0];
    if (!file) { say("choose a song file first"); return; }
    const target = Number($("upload-target").value), n = Number($("upload-n").value);
    state.busy = true; state.token = null; state.picked = false;
    $("upload-submit").disabled = true;
    $("variations").textContent = "";
    say("Uploading and editing… (this takes a little while)");
    try {
      const q = new URLSearchParams({ target: String(target), n: String(n) });
      const resp = await fetch(`/api/upload?${q}`, { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/octet-stream" }, body: file });
      const body = await resp.json().catch(() => null);
      if (resp.status === 201) {
        state.token = body.token;
        state.listen = body.listen || null;
        show(body.variations);
        say(`${body.variations.length} variations, best-ranked first: listen, then pick the best.`);
      } else {
        say(`upload refused: ${describe(body)}`);
      }
    } catch (e) {
      say(`upload failed (network): ${e.message}`);
    } finally {
      state.busy = false;
      $("upload-submit").disabled = false;
    }
  }

  $("upload-form").addEventListener("submit", submit);
  fetch("/api/health", { credentials: "same-origin" }).then((r) => r.json()).then((h) => { $("upload").hidden = !h.uploads; }).catch(() => {});
})();
