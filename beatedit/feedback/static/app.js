// beatedit A/B listening page. No framework; talks to /api/* with same-origin JSON.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const audio = { a: $("audio-a"), b: $("audio-b") };
  const state = { item: null, strength: null, sessionVotes: 0, active: "a", busy: false, progress: null, votesOpen: false };
  window.beateditFeedback = state; // for debugging / tests: read-only view of the page state

  function status(msg) { $("status").textContent = msg || ""; }

  function showOnly(id) {
    for (const s of ["login", "pair", "done"]) $(s).hidden = s !== id;
  }

  function renderProgress() {
    const p = state.progress;
    if (!p) return;
    $("progress").textContent =
      `This session: ${state.sessionVotes} vote${state.sessionVotes === 1 ? "" : "s"} · ` +
      `your total: ${p.votes} · remaining in your queue: ${p.remaining}`;
  }

  async function api(path, opts) {
    const resp = await fetch(path, Object.assign({ credentials: "same-origin", headers: { "Content-Type": "application/json" } }, opts || {}));
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    return { status: resp.status, ok: resp.ok, body };
  }

  function describe(body) {
    if (!body) return "request failed";
    if (Array.isArray(body.detail)) return body.detail.map((d) => `${d.field}: ${d.message}`).join("; ");
    return body.detail || body.error || "request failed";
  }

  function setActive(side) {
    state.active = side;
    $("player-a").classList.toggle("active", side === "a");
    $("player-b").classList.toggle("active", side === "b");
  }

  function other(side) { return side === "a" ? "b" : "a"; }

  function play(side) {
    audio[other(side)].pause();
    setActive(side);
    const p = audio[side].play();
    if (p && p.catch) p.catch((e) => status(`cannot play ${side.toUpperCase()}: ${e.message}`));
  }

  function togglePlay() {
    const el = audio[state.active];
    if (el.paused) play(state.active); else el.pause();
  }

  function switchSide() {
    const from = audio[state.active], to = other(state.active);
    const t = from.currentTime, wasPlaying = !from.paused;
    from.pause();
    try { audio[to].currentTime = Math.min(t, isFinite(audio[to].duration) ? audio[to].duration : t); } catch (e) { /* not loaded yet */ }
    setActive(to);
    if (wasPlaying) play(to);
  }

  function playBoth() {
    audio.a.currentTime = 0;
    audio.b.currentTime = 0;
    const next = () => { audio.a.removeEventListener("ended", next); play("b"); };
    audio.a.addEventListener("ended", next);
    play("a");
  }

  function listened(el) {
    let s = 0;
    for (let i = 0; i < el.played.length; i++) s += el.played.end(i) - el.played.start(i);
    return Math.round(s * 1000) / 1000;
  }

  // --- listening gate (issue 20.6): A / B / tie unlock once each side was heard past its first
  // seam (+ margin) or for min(min_listen_s, heard_fraction x its length) seconds. Skip never waits.
  function heardPastSeam(el, seams, margin) {
    if (!seams || !seams.length) return false;
    const need = seams[0] + margin;
    const end = isFinite(el.duration) ? Math.min(need, el.duration - 0.05) : need;
    for (let i = 0; i < el.played.length; i++) if (el.played.end(i) >= end) return true;
    return false;
  }

  function sideHeard(side) {
    const L = state.item && state.item.listen;
    if (!L || !(L.min_listen_s > 0)) return true;
    const el = audio[side], info = L[side] || {};
    const dur = isFinite(el.duration) && el.duration > 0 ? el.duration : info.duration;
    const need = dur ? Math.min(L.min_listen_s, L.heard_fraction * dur) : L.min_listen_s;
    return listened(el) + 1e-6 >= need || heardPastSeam(el, info.seams, L.seam_margin_s);
  }

  function votesOpen() { return sideHeard("a") && sideHeard("b"); }

  function updateGate() {
    const open = votesOpen();
    for (const id of ["vote-a", "vote-b", "vote-tie"]) $(id).disabled = state.busy || !open;
    const todo = ["a", "b"].filter((s) => !sideHeard(s)).map((s) => s.toUpperCase());
    $("gate").textContent = open ? "" : `Listen to ${todo.join(" and ")} past the first seam (or ${state.item.listen.min_listen_s} s) to vote.`;
    state.votesOpen = open;
  }

  function setStrength(k) {
    state.strength = state.strength === k ? null : k;
    document.querySelectorAll(".strength button").forEach((b) => b.setAttribute("aria-pressed", String(Number(b.dataset.strength) === state.strength)));
  }

  function resetPair() {
    for (const s of ["a", "b"]) { audio[s].pause(); }
    setStrength(null);
    state.strength = null;
    $("comment").value = "";
    setActive("a");
  }

  async function loadNext() {
    const r = await api("/api/next?n=1");
    if (r.status === 401) { showOnly("login"); $("progress").textContent = ""; return; }
    if (!r.ok) { status(`could not load the next pair: ${describe(r.body)}`); return; }
    state.progress = r.body.progress;
    renderProgress();
    const item = r.body.items[0];
    state.item = item || null;
    if (!item) { resetPair(); audio.a.removeAttribute("src"); audio.b.removeAttribute("src"); showOnly("done"); return; }
    resetPair();
    $("song-id").textContent = item.song_id;
    $("target-ratio").textContent = `${Math.round(item.target_ratio * 100)}%`;
    audio.a.src = item.audio.a;
    audio.b.src = item.audio.b;
    audio.a.load(); audio.b.load();
    const orig = $("audio-original");
    orig.pause();
    if (item.audio.original) { orig.src = item.audio.original; $("original-box").hidden = false; }
    else { orig.removeAttribute("src"); $("original-box").hidden = true; }
    showOnly("pair");
    updateGate();
  }

  async function vote(choice) {
    if (!state.item || state.busy) return;
    if (choice !== "skip" && !votesOpen()) { updateGate(); status("Listen to both edits first."); return; }
    state.busy = true;
    document.querySelectorAll(".choices button").forEach((b) => { b.disabled = true; });
    try {
      const payload = {
        token: state.item.token, choice,
        strength: (choice === "a" || choice === "b") ? state.strength : null,
        comment: $("comment").value,
        listened_a: listened(audio.a), listened_b: listened(audio.b),
      };
      const r = await api("/api/vote", { method: "POST", body: JSON.stringify(payload) });
      if (r.status === 201) {
        state.sessionVotes += 1;
        status(choice === "skip" ? "Skipped." : "Thanks — vote saved.");
        await loadNext();
      } else if (r.status === 409 || r.status === 410) {
        status(`${describe(r.body)} — loading the next pair.`);
        await loadNext();
      } else {
        status(`vote not saved: ${describe(r.body)}`);
      }
    } catch (e) {
      status(`vote not saved (network): ${e.message}`);
    } finally {
      state.busy = false;
      $("vote-skip").disabled = false;
      if (state.item) updateGate();
    }
  }

  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT")) {
      if (ev.key === "Escape") t.blur();
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey || $("pair").hidden) return;
    const k = ev.key.toLowerCase();
    if (k === "a" || k === "b") { vote(k); }
    else if (k === "t") { vote("tie"); }
    else if (k === "s") { vote("skip"); }
    else if (k === "1" || k === "2" || k === "3") { setStrength(Number(k)); }
    else if (k === " " || ev.code === "Space") { ev.preventDefault(); togglePlay(); }
    else if (k === "x") { switchSide(); }
    else return;
  });

  document.querySelectorAll(".play").forEach((b) => b.addEventListener("click", () => play(b.dataset.side)));
  document.querySelectorAll(".strength button").forEach((b) => b.addEventListener("click", () => setStrength(Number(b.dataset.strength))));
  document.querySelectorAll(".choices button").forEach((b) => b.addEventListener("click", () => vote(b.dataset.choice)));
  $("play-both").addEventListener("click", playBoth);
  $("switch").addEventListener("click", switchSide);
  for (const s of ["a", "b"]) audio[s].addEventListener("play", () => { setActive(s); audio[other(s)].pause(); $("audio-original").pause(); });
  for (const s of ["a", "b"]) for (const ev of ["timeupdate", "pause", "ended", "loadedmetadata"]) audio[s].addEventListener(ev, () => { if (state.item) updateGate(); });
  $("audio-original").addEventListener("play", () => { audio.a.pause(); audio.b.pause(); });
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await api("/api/session", { method: "POST", body: JSON.stringify({ token: $("login-token").value }) });
    if (r.ok) { $("login-token").value = ""; status(""); await loadNext(); } else status(`sign-in failed: ${describe(r.body)}`);
  });

  loadNext();
})();
