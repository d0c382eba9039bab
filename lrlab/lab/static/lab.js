// The browser lab: every button posts one action to the server's LabSession and draws the view it returns.
// Numbers are shown rounded like a spreadsheet column; each cell's data-value holds the exact number.
"use strict";

const $ = (id) => document.getElementById(id);
const ROW_KEYS = ["x", "y", "b", "a", "pred", "err2", "fd_db", "fd_da", "db", "da", "mom_b", "mom_a", "sq_b", "sq_a",
  "slow_b", "slow_a", "z_b", "z_a", "new_b", "new_a"];
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
  "#7f7f7f", "#000000"];
let surface = null;
let current = null;
let drawnSheet = null; // what the sheet's charts and tables show now
let drawnRace = null; // the id of the race on the page: drawing it again costs more than any action
let preferredMode = "workbook"; // the mode the user chose; sheets since Adam show textbook whatever it is
window.labTimings = [];

function fmt(v) {
  if (typeof v === "string" || v === null || v === undefined) return v ?? "";
  if (Number.isInteger(v)) return String(v);
  const m = Math.abs(v);
  if (v === 0 || (m >= 1e-4 && m < 1e7)) {
    return m >= 1 ? String(Number(v.toPrecision(7))) : v.toFixed(6).replace(/0+$/, "").replace(/\.$/, "");
  }
  return v.toExponential(4);
}

function setNumber(el, v) {
  el.textContent = fmt(v);
  el.dataset.value = String(v);
}

function parseTyped(text) {
  const n = Number(text);
  return text.trim() !== "" && Number.isFinite(n) ? n : text;
}

async function act(action, body) {
  const t0 = performance.now();
  document.body.dataset.busy = String(Number(document.body.dataset.busy) + 1);
  try {
    const response = await fetch("/api/" + action, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body || {}),
    });
    const view = await response.json();
    await draw(view);
    $("message").textContent = view.error || "";
    const ms = performance.now() - t0;
    window.labTimings.push({action, ms, server_ms: view.server_ms});
    $("timing").textContent = `${action}: ${ms.toFixed(1)} ms in the page (server ${view.server_ms.toFixed(1)} ms)`;
  } catch (e) {
    $("message").textContent = String(e);
  } finally {
    document.body.dataset.busy = String(Number(document.body.dataset.busy) - 1);
    document.body.dataset.actions = String(Number(document.body.dataset.actions) + 1);
  }
}

async function draw(view) {
  current = view;
  if (!surface || surface.version !== view.data.version) {
    surface = await (await fetch("/api/surface")).json();
  }
  drawControls(view);
  drawStatus(view);
  // Redraw the sheet's charts and tables only when what they show changed (a race or a refused action
  // leaves them as they are).
  const key = JSON.stringify([view.sheet, view.textbook, view.epoch, view.cursor, view.hypers, view.a, view.b,
    view.history.length, view.data.version]);
  if (key !== drawnSheet) {
    drawnSheet = key;
    drawRmse(view);
    drawSurface("surface-chart", [{name: view.sheet, path: view.path}], view.target, `${view.sheet}: path over log10 SSE`);
    drawCells(view);
    drawRows(view);
  }
  drawRace(view);
}

function drawControls(view) {
  const select = $("sheet");
  if (select.options.length !== view.sheets.length) {
    select.innerHTML = view.sheets.map((s) => `<option value="${s.name}">${s.name}</option>`).join("");
  }
  select.value = view.sheet;
  $("mode").value = view.textbook ? "textbook" : "workbook";
  const workbook = view.sheets.find((s) => s.name === view.sheet).workbook;
  $("mode").querySelector('option[value="workbook"]').disabled = !workbook;
  $("lr").value = String(view.hypers.lr);
  $("lr-slider").value = String(Math.log10(view.hypers.lr));
  for (const beta of ["beta1", "beta2"]) {
    const has = beta in view.hypers;
    $(beta + "-box").hidden = !has;
    if (has) {
      $(beta).value = String(view.hypers[beta]);
      $(beta + "-slider").value = String(view.hypers[beta]);
    }
  }
  $("data-source").textContent = `${view.data.source} (${view.data.rows} rows)`;
  $("note").textContent = view.note;
}

function drawStatus(view) {
  setNumber($("epoch"), view.epoch);
  setNumber($("a"), view.a);
  setNumber($("b"), view.b);
  setNumber($("lr-now"), view.hypers.lr);
  setNumber($("rmse"), view.rmse);
  $("error-label").textContent = view.error_label;
  setNumber($("target-a"), view.target[0]);
  setNumber($("target-b"), view.target[1]);
}

function drawRmse(view) {
  const trace = {x: view.history.map((h) => h.epoch), y: view.history.map((h) => h.rmse), mode: "lines+markers",
    name: view.sheet};
  Plotly.react("rmse-chart", [trace], {
    // The page gets the last epochs only (the server bounds what it sends); the CSV link has them all.
    title: {text: view.history_epochs > view.history.length
      ? `${view.sheet}: error by epoch (the last ${view.history.length} of ${view.history_epochs})`
      : `${view.sheet}: error by epoch`}, margin: {t: 40, r: 10},
    xaxis: {title: {text: "epoch"}}, yaxis: {title: {text: view.error_label}, type: "log"},
  }, {displayModeBar: false});
}

function drawSurface(div, paths, target, title, legend = false) {
  const traces = [{type: "contour", x: surface.b, y: surface.a, z: surface.z, colorscale: "Greys", reversescale: true,
    showscale: false, contours: {coloring: "lines"}, ncontours: 25, hoverinfo: "skip", name: "log10 SSE"}];
  paths.forEach((p, i) => {
    const finite = p.path.filter((q) => typeof q[0] === "number" && typeof q[1] === "number");
    traces.push({x: finite.map((q) => q[0]), y: finite.map((q) => q[1]), mode: paths.length > 1 ? "lines" : "lines+markers",
      name: p.name, marker: {size: 4}, line: {color: COLORS[i % COLORS.length], width: 1.5}});
  });
  traces.push({x: [target[1]], y: [target[0]], mode: "markers", name: "best line",
    marker: {symbol: "star", size: 14, color: "red"}});
  Plotly.react(div, traces, {
    title: {text: title}, margin: {t: 40, r: 10}, showlegend: legend,
    xaxis: {title: {text: "b (intercept)"}, range: [surface.b[0], surface.b[surface.b.length - 1]]},
    yaxis: {title: {text: "a (slope)"}, range: [surface.a[0], surface.a[surface.a.length - 1]]},
  }, {displayModeBar: false});
}

function drawCells(view) {
  const body = $("cells").querySelector("tbody");
  const row = view.rows[view.cursor];
  $("row-label").textContent = row ? `(data row ${view.cursor + 1} of ${view.rows.length})` : "(none: overflow)";
  if (!row) { body.innerHTML = ""; return; }
  body.innerHTML = ROW_KEYS.filter((k) => k in row).map((k) =>
    `<tr data-key="${k}"><th>${k}</th><td class="value" data-value="${row[k]}">${fmt(row[k])}</td>` +
    `<td class="formula">${view.formulas[k] || ""}</td></tr>`).join("");
}

function drawRows(view) {
  const keys = view.rows.length ? ROW_KEYS.filter((k) => k in view.rows[0]) : [];
  $("rows").querySelector("thead").innerHTML = "<tr><th>row</th>" + keys.map((k) => `<th>${k}</th>`).join("") + "</tr>";
  $("rows").querySelector("tbody").innerHTML = view.rows.map((r, i) =>
    `<tr class="${i === view.cursor ? "current" : ""}"><td>${i + 1}</td>` +
    keys.map((k) => `<td data-key="${k}" data-value="${r[k]}">${fmt(r[k])}</td>`).join("") + "</tr>").join("");
}

function drawRace(view) {
  if (!view.race) { $("race-view").hidden = true; drawnRace = null; return; }
  if (drawnRace === view.race.id) return;
  drawnRace = view.race.id;
  $("race-view").hidden = false;
  const results = view.race.results;
  Plotly.react("race-rmse", results.map((r, i) => ({x: r.history.map((h) => h.epoch), y: r.history.map((h) => h.rmse),
    mode: "lines", name: r.sheet, line: {color: COLORS[i % COLORS.length]}})), {
    title: {text: `${results.length} optimizers from Reset`}, margin: {t: 40, r: 10},
    xaxis: {title: {text: "epoch"}, type: "log"}, yaxis: {title: {text: "error"}, type: "log"},
  }, {displayModeBar: false});
  drawSurface("race-surface", results.map((r) => ({name: r.sheet, path: [[1, 1], ...r.history.map((h) => [h.b, h.a])]})),
    view.target, "paths after each epoch");
  $("race-table").querySelector("tbody").innerHTML = results.map((r) => {
    const last = r.history.length ? r.history[r.history.length - 1].rmse : "";
    return `<tr data-sheet="${r.sheet}"><td>${r.sheet}</td><td>${r.textbook ? "textbook" : "workbook"}</td>` +
      `<td data-value="${r.a}">${fmt(r.a)}</td><td data-value="${r.b}">${fmt(r.b)}</td><td>${fmt(r.lr)}</td>` +
      `<td data-value="${last}">${fmt(last)}</td><td>${r.stopped ? "overflow" : ""}</td></tr>`;
  }).join("");
}

// A slider answers while it moves: one request at a time, and the latest position wins.
let sliderPending = null;
let sliderSending = false;
async function sliderMoved(body) {
  sliderPending = body;
  if (sliderSending) return;
  sliderSending = true;
  while (sliderPending) {
    const next = sliderPending;
    sliderPending = null;
    await act("hypers", next);
  }
  sliderSending = false;
}

function wire() {
  $("reset").onclick = () => act("reset");
  $("run").onclick = () => act("run", {epochs: parseTyped($("epochs").value)});
  $("step").onclick = () => act("step");
  $("sheet").onchange = () => {
    const name = $("sheet").value;
    const workbook = current.sheets.find((s) => s.name === name).workbook;
    act("sheet", {name, textbook: preferredMode === "textbook" || !workbook});
  };
  $("mode").onchange = () => {
    preferredMode = $("mode").value;
    act("sheet", {name: $("sheet").value, textbook: preferredMode === "textbook"});
  };
  $("lr").onchange = () => act("hypers", {lr: parseTyped($("lr").value)});
  $("lr-slider").oninput = () => {
    const lr = Number((10 ** Number($("lr-slider").value)).toPrecision(3));
    $("lr").value = String(lr);
    sliderMoved({lr});
  };
  for (const beta of ["beta1", "beta2"]) {
    $(beta).onchange = () => act("hypers", {[beta]: parseTyped($(beta).value)});
    $(beta + "-slider").oninput = () => sliderMoved({[beta]: Number($(beta + "-slider").value)});
  }
  $("data-workbook").onclick = () => act("data", {source: "workbook"});
  $("data-random").onclick = () => {
    const seed = $("seed").value.trim();
    act("data", {source: "random", seed: seed === "" ? null : parseTyped(seed)});
  };
  $("csv").onchange = async () => {
    const file = $("csv").files[0];
    if (file) await act("upload", {filename: file.name, text: await file.text()});
    $("csv").value = "";
  };
  $("race").onclick = () => act("race", {epochs: parseTyped($("race-epochs").value)});
}

wire();
fetch("/api/state").then((r) => r.json()).then(draw).then(() => {
  document.body.dataset.ready = "1";
});
