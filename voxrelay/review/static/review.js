// voxrelay review page: the queue on the left, one segment at a time on the right.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const KEY = "voxrelay-review-token";
  const REASONS = {
    needs_review: ["low confidence", ""],
    suggestion: ["suggestion", "suggestion"],
    transcribe: ["transcribe", "transcribe"],
  };
  let token = null;
  let items = [];
  let current = null;
  let original = "";
  let audioUrl = null;
  let busy = false;

  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem(KEY, fragment.get("token"));
    history.replaceState(null, "", location.pathname);
  }
  token = sessionStorage.getItem(KEY);

  const words = (text) => (text || "").toLowerCase().replace(/[^\p{L}\p{N}'\s]/gu, " ").split(/\s+/).filter(Boolean);

  function wordEdits(a, b) {
    // Levenshtein distance over words: how many words a reviewer changed.
    const x = words(a), y = words(b);
    let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
    for (let i = 1; i <= x.length; i++) {
      const row = [i];
      for (let j = 1; j <= y.length; j++) {
        row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (x[i - 1] === y[j - 1] ? 0 : 1));
      }
      prev = row;
    }
    return prev[y.length];
  }

  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {}, { Authorization: `Bearer ${token}` });
    const response = await fetch(path, Object.assign({}, options, { headers }));
    if (response.status === 401 || response.status === 403) {
      const body = await response.json().catch(() => ({}));
      showLogin(body.error || "the token was refused");
      throw new Error(body.error || "refused");
    }
    if (!response.ok) {
      const body = await response.json().catch(() => ({ error: response.statusText }));
      throw new Error(body.error || response.statusText);
    }
    return response;
  }

  function showLogin(message) {
    sessionStorage.removeItem(KEY);
    token = null;
    $("app").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").value = "";
    $("token").focus();
  }

  function fmtTime(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function pct(v) {
    return v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)} %`;
  }

  function renderQueue() {
    const list = $("queue");
    list.replaceChildren();
    for (const item of items) {
      const li = document.createElement("li");
      li.dataset.id = item.id;
      if (current && item.id === current.id) li.className = "current";
      const first = document.createElement("span");
      first.className = "first";
      first.textContent = item.show_text ? item.model_text || "(no text)" : "(to transcribe)";
      const small = document.createElement("span");
      small.className = "small";
      small.textContent = `${fmtTime(item.created)} · ${item.deployment} · ${item.audio_seconds.toFixed(1)} s · ${REASONS[item.reason][0]}`;
      li.append(first, small);
      li.addEventListener("click", () => open(item));
      list.append(li);
    }
    $("pending-count").textContent = String(items.length);
  }

  function renderStats(stats, pending, reviewer) {
    const body = $("stats").querySelector("tbody");
    body.replaceChildren();
    let reviewed = 0;
    for (const s of stats) {
      const tr = document.createElement("tr");
      const done = s.accepted + s.corrected;
      reviewed += done;
      for (const [value, num] of [
        [s.deployment, false],
        [pct(s.wer), true],
        [pct(s.redo_ratio), true],
        [String(done), true],
        [String(s.pending), true],
      ]) {
        const td = document.createElement("td");
        td.textContent = value;
        if (num) td.className = "num";
        tr.append(td);
      }
      body.append(tr);
    }
    $("summary").textContent = `${pending} waiting · ${reviewed} reviewed`;
    $("who").textContent = `reviewing as ${reviewer}`;
  }

  async function refresh() {
    const data = await (await api("/api/items?status=pending&limit=200")).json();
    items = data.items;
    renderStats(data.stats, data.pending, data.reviewer);
    if (!current || !items.some((i) => i.id === current.id)) {
      await open(items[0] || null);
    } else {
      renderQueue();
    }
  }

  function editState() {
    if (!current) return;
    const text = $("text").value;
    const accept = $("accept");
    if (!current.show_text) {
      accept.firstChild.textContent = "Save transcript ";
      accept.disabled = !text.trim();
      $("edit-state").textContent = "";
      return;
    }
    const edits = wordEdits(original, text);
    $("revert").disabled = text === original; // nothing to undo
    accept.firstChild.textContent = edits ? "Save correction " : "Accept ";
    accept.disabled = !text.trim();
    $("edit-state").textContent = edits ? `${edits} word${edits === 1 ? "" : "s"} changed from the model's text` : "";
  }

  async function open(item) {
    current = item;
    $("message").textContent = "";
    if (audioUrl) URL.revokeObjectURL(audioUrl);
    audioUrl = null;
    if (!item) {
      $("item").hidden = true;
      $("empty").hidden = false;
      renderQueue();
      return;
    }
    $("empty").hidden = true;
    $("item").hidden = false;
    const [label, cls] = REASONS[item.reason];
    $("item-reason").textContent = label;
    $("item-reason").className = `badge ${cls}`;
    $("item-meta").textContent =
      `${item.deployment} (${item.model}) · segment ${item.segment_id || "(single request)"} · ` +
      `${item.audio_seconds.toFixed(1)} s · ${item.language || "?"} · ${fmtTime(item.created)}` +
      (item.skips ? ` · skipped ${item.skips}×` : "");
    const why = $("item-why");
    why.replaceChildren(...item.why.map((w) => Object.assign(document.createElement("li"), { textContent: w })));
    why.className = item.reason === "needs_review" ? "" : "calm";
    original = item.show_text ? item.model_text : "";
    $("text").value = original;
    $("text").placeholder = item.show_text ? "" : "Type what you hear";
    $("text-label").textContent = item.show_text ? "What is said (correct the model's text if it is wrong)" : "What is said";
    $("model-line").hidden = !item.show_text;
    $("model-text").textContent = item.model_text || "(no text)";
    $("revert").hidden = !item.show_text;
    editState();
    renderQueue();
    $("text").focus();
    const blob = await (await api(`/api/items/${encodeURIComponent(item.id)}/audio`)).blob();
    if (current !== item) return;
    audioUrl = URL.createObjectURL(blob);
    $("audio").src = audioUrl;
    $("audio").play().catch(() => {});
  }

  async function act(action) {
    if (!current || busy) return;
    const text = $("text").value.trim();
    let body;
    if (action === "skip") {
      body = { action: "skip" };
    } else if (!text) {
      $("message").textContent = "Type the text first.";
      return;
    } else if (current.show_text && wordEdits(original, text) === 0) {
      body = { action: "accept" };
    } else {
      body = { action: "correct", text };
    }
    busy = true;
    const label = current.segment_id || current.id;
    try {
      const response = await api(`/api/items/${encodeURIComponent(current.id)}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const done = await response.json();
      const index = items.findIndex((i) => i.id === current.id);
      if (action === "skip") {
        items.push(items.splice(index, 1)[0]);
      } else {
        items.splice(index, 1);
      }
      const next = action === "skip" ? items.find((i) => i.id !== done.id) || items[0] : items[index] || items[0];
      await open(next || null);
      const wer = done.wer === null ? "" : ` (the model's text had a WER of ${pct(done.wer)} against yours)`;
      $("message").textContent =
        action === "skip"
          ? `✓ Skipped ${label}: it stays in the queue, after the others.`
          : done.status === "accepted"
            ? `✓ Accepted ${label}.`
            : `✓ Correction saved for ${label}${wer}.`;
      refresh().catch(() => {});
    } catch (err) {
      $("message").textContent = `Not saved: ${err.message}`;
    } finally {
      busy = false;
    }
  }

  function playPause() {
    const audio = $("audio");
    if (audio.paused) audio.play().catch(() => {});
    else audio.pause();
  }

  function replay() {
    const audio = $("audio");
    audio.currentTime = 0;
    audio.play().catch(() => {});
  }

  document.addEventListener("keydown", (e) => {
    if ($("app").hidden) return;
    if (e.ctrlKey && e.key === "Enter") { e.preventDefault(); act("submit"); }
    else if (e.ctrlKey && (e.key === " " || e.code === "Space")) { e.preventDefault(); playPause(); }
    else if (e.altKey && (e.key === "r" || e.key === "R")) { e.preventDefault(); replay(); }
    else if (e.altKey && (e.key === "s" || e.key === "S")) { e.preventDefault(); act("skip"); }
    else if (e.key === "Escape" && current) { e.preventDefault(); $("text").value = original; editState(); }
  });
  $("text").addEventListener("input", editState);
  $("accept").addEventListener("click", () => act("submit"));
  $("skip").addEventListener("click", () => act("skip"));
  $("revert").addEventListener("click", () => { $("text").value = original; editState(); $("text").focus(); });
  $("replay").addEventListener("click", replay);
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem(KEY, token);
    start();
  });

  function start() {
    if (!token) { showLogin(""); return; }
    $("login").hidden = true;
    $("app").hidden = false;
    refresh().catch((err) => { if (token) $("summary").textContent = `Cannot load the queue: ${err.message}`; });
  }

  setInterval(() => { if (token && !busy) refresh().catch(() => {}); }, 5000);
  start();
})();
