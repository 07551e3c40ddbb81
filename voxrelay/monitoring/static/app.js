// The live page: polls /api/state every 2 s and redraws charts (uPlot) and tables.
"use strict";
const charts = {};
const palette = ["#2e90fa", "#f79009", "#12b76a", "#d92d20", "#7a5af8"];
const CHARTS = {
  "c-throughput": [["segments_per_second", "segments/s"], ["audio_per_second", "audio s/s"]],
  "c-latency": [["queue_wait", "server queue"], ["inference", "inference"]],
  "c-queue": [["queue_depth", "queued"], ["in_flight", "in model"], ["active_streams", "streams"]],
  "c-rtf": [["rtf", "RTF"]],
  "c-speech": [["speech_ratio", "speech ratio"]],
  "c-level": [["level_dbfs", "dBFS"]],
  "c-snr": [["snr_db", "dB"]],
  "c-quality": [["empty_ratio", "empty"], ["hallucination_ratio", "hallucinated"], ["estimated_wer", "est. WER"]],
  "c-logprob": [["avg_logprob", "avg log-prob"]],
  "c-nospeech": [["no_speech_prob", "no-speech prob"]],
};

function fmt(v, digits) {
  if (v === null || v === undefined) return "–";
  if (Math.abs(v) >= 100) return v.toFixed(0);
  return v.toFixed(digits === undefined ? 3 : digits);
}

function esc(s) {
  return String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
}

function drawChart(id, series, points) {
  const el = document.getElementById(id);
  const xs = points.map(p => p.t);
  const cols = series.map(([key]) => points.map(p => (p[key] === undefined ? null : p[key])));
  const hasData = cols.some(c => c.some(v => v !== null));
  if (!hasData) {
    // Traffic without this figure (a Recognize call carries no edge measurements) is not "no traffic".
    const traffic = points.some(p => (p.segments_per_second || 0) > 0);
    const why = traffic
      ? "no values: the segments so far did not carry this (edges measure it on streamed segments; Recognize calls have none)"
      : "no data yet: waiting for traffic";
    if (!charts[id]) el.innerHTML = `<div class="empty-chart">${why}</div>`;
    return;
  }
  const data = [xs, ...cols];
  if (!charts[id]) {
    el.innerHTML = "";
    const opts = {
      width: el.clientWidth || 400, height: 180,
      series: [{}, ...series.map(([, label], i) => ({label, stroke: palette[i], width: 2, spanGaps: true,
                                                       value: (u, v) => fmt(v)}))],
      axes: [{}, {size: 55, values: (u, vals) => vals.map(v => fmt(v, 2))}],
      legend: {live: true},
    };
    charts[id] = new uPlot(opts, data, el);
    el.dataset.updates = "0";
  } else {
    charts[id].setData(data);
  }
  // The legend shows the latest values unless the pointer is over the chart (then the values under it).
  const u = charts[id];
  if (u.cursor.left === undefined || u.cursor.left < 0) u.setLegend({idx: xs.length - 1});
  el.dataset.updates = String(Number(el.dataset.updates) + 1);
  el.dataset.points = String(xs.length);
}

const PERCENT = new Set(["error_ratio", "empty_transcript_ratio", "hallucination_ratio", "vad_false_positive_ratio",
                         "edge_clipping", "estimated_wer"]);
const UNITS = {e2e_latency_p95: " s", queue_wait_p95: " s", spool_age: " s", edge_input_dead: " dBFS",
               resource_exhausted_rate: " /s", no_traffic: " seg/s", input_drift: " features", output_drift: " features"};

function fmtAlarm(a, v) {
  if (v === null || v === undefined) return "–";
  if (PERCENT.has(a.key)) return (100 * v).toFixed(1) + " %";
  return fmt(v, 2) + (UNITS[a.key] || "");
}

function stateBadge(state) {
  const cls = state === "no data" ? "nodata" : state;
  const text = state === "prometheus" ? "needs Prometheus" : state;
  return `<span class="badge ${cls}">${esc(text)}</span>`;
}

const ORDER = {firing: 0, pending: 1, ok: 2, "no data": 3, prometheus: 4};

function drawAlarms(alarms) {
  const rows = alarms.slice().sort((a, b) => ORDER[a.state] - ORDER[b.state]);
  // Alarms on the edges' metrics cannot be judged here: one line naming them, not a row each.
  const local = rows.filter(a => a.state !== "prometheus");
  const remote = rows.filter(a => a.state === "prometheus");
  const elsewhere = remote.length ? `
    <tr class="alarm-other" data-state="prometheus"><td>${stateBadge("prometheus")}</td>
      <td colspan="5">${remote.map(a => `<span data-key="${esc(a.key)}" title="${esc(a.summary)}">${esc(a.key)}</span>`).join(", ")}:
      on the edges' metrics: evaluated by the Prometheus rules (<code>voxrelay alerts render</code>), not on this page</td></tr>` : "";
  document.querySelector("#alarms tbody").innerHTML = local.map(a => `
    <tr class="alarm-${a.state === "firing" ? "firing" : "other"}" data-key="${esc(a.key)}" data-state="${esc(a.state)}">
      <td>${stateBadge(a.state)}</td>
      <td><b>${esc(a.key)}</b><br>${esc(a.summary)}${a.detail ? "<br><i>" + esc(a.detail) + "</i>" : ""}</td>
      <td class="num">${fmtAlarm(a, a.value)}</td><td class="num">${fmtAlarm(a, a.threshold)}</td><td>${esc(a.for)}</td>
      <td class="action">${a.state === "firing" || a.state === "pending" ? esc(a.action) : ""}</td>
    </tr>`).join("") + elsewhere;
}

function referenceText(m) {
  if (m.reference_source === "learning")
    return `learning from the first ${m.learn_segments} segments (${m.reference_segments} so far): no drift scores yet`;
  if (m.reference_source === "learned") return `learned from ${m.reference_origin}`;
  return `profile from ${esc(m.reference_source)} ${esc(m.reference_origin)} (${m.reference_segments} segments, ${esc(m.reference_created)})`;
}

function drawDeployments(deployments, models) {
  document.querySelector("#deployments tbody").innerHTML = deployments.map(d => `
    <tr><td>${esc(d.name)}</td><td>${esc(d.model)}</td><td>${esc(d.version)}</td><td>${esc(d.backend)}</td>
    <td>${esc(d.slot)}</td><td class="num">${(100 * d.share).toFixed(0)} %</td><td>${esc(d.reference)}</td></tr>`).join("");
}

function fmtP(p) {
  // A score alarms only when it is also significant: its p-value says why a high score may not.
  if (p === null || p === undefined) return "";
  const text = p < 0.001 ? p.toExponential(0) : p.toFixed(3);
  return ` <span class="p">p ${text}</span>`;
}

function drawDrift(models, settings) {
  document.getElementById("drift-hint").textContent =
    `windows of ${settings.short_window} and ${settings.long_window} segments; drift score = PSI against the reference ` +
    `(alarm above ${settings.psi_short} short / ${settings.psi_long} long with p < ${settings.p_value})`;
  document.getElementById("drift").innerHTML = models.map(m => `
    <p><b>${esc(m.model)}</b> (${esc(m.version)}): reference ${referenceText(m)}</p>
    <table class="drift" data-model="${esc(m.model)}"><thead><tr><th>feature</th><th>side</th><th>reference</th>
      <th>now (short)</th><th>now (long)</th><th>score short</th><th>score long</th><th>alarm</th></tr></thead><tbody>
    ${m.features.map(f => `<tr class="${f.alarm ? "drifting" : ""}"><td>${esc(f.feature)}</td><td>${esc(f.side)}</td>
      <td>${esc(f.reference)}</td><td class="num">${fmt(f.short)}</td><td class="num">${fmt(f.long)}</td>
      <td class="num">${fmt(f.score_short, 2)}${fmtP(f.p_short)}</td><td class="num">${fmt(f.score_long, 2)}${fmtP(f.p_long)}</td>
      <td>${f.alarm ? '<span class="badge firing">drifting</span>' : ""}</td></tr>`).join("")}
    </tbody></table>`).join("");
}

async function refresh() {
  try {
    const response = await fetch("/api/state", {cache: "no-store"});
    const state = await response.json();
    for (const [id, series] of Object.entries(CHARTS)) drawChart(id, series, state.points);
    drawAlarms(state.alarms);
    drawDeployments(state.deployments, state.models);
    drawDrift(state.models, state.drift_settings);
    document.getElementById("thresholds-source").textContent = state.thresholds_source;
    const firing = state.alarms.filter(a => a.state === "firing").length;
    document.getElementById("status").textContent =
      `updated ${new Date().toLocaleTimeString()} · ${firing} alarm(s) firing`;
  } catch (err) {
    document.getElementById("status").textContent = "cannot reach the recognizer: " + err;
  }
}
refresh();
setInterval(refresh, 2000);
