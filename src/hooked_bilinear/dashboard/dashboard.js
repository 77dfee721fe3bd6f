// hooked-bilinear dashboard: vanilla JS, no dependencies. Reads the JSON of the element #data and draws the views.
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const $ = (tag, attrs, ...children) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) el.append(c);
  return el;
};
const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs) => {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
};
const fmt = (x, digits = 4) => {
  if (x === null || x === undefined) return "n/a";
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-3) return x.toExponential(digits - 1);
  return Number(x.toPrecision(digits)).toString();
};
const signed = (x, digits = 4) => (x > 0 ? "+" : "") + fmt(x, digits);
const pct = (x) => (x === null ? "n/a" : (100 * x).toFixed(1) + "%");

// The highlight colour of a value relative to a scale: orange for positive, blue for negative; alpha <= 0.85.
function colour(value, scale) {
  const a = scale > 0 ? Math.round(Math.min(1, Math.abs(value) / scale) * 0.85 * 1000) / 1000 : 0;
  return value >= 0 ? `rgba(234, 88, 12, ${a})` : `rgba(37, 99, 235, ${a})`;
}
function decode(b64, columns) {
  const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
  const flat = new Float32Array(bytes.buffer);
  const rows = [];
  for (let i = 0; i < flat.length; i += columns) rows.push(Array.from(flat.subarray(i, i + columns)));
  return rows;
}
function tokenText(s) {
  if (s === undefined) return "?";
  if (s.startsWith("##")) return s.slice(2);
  if (s.startsWith("\u0120")) return " " + s.slice(1);
  if (s === "\u010a" || s === "\n") return "\u23ce";
  return " " + s;
}
const tokenName = (id) => (DATA.vocab ? DATA.vocab[String(id)] : String(id));

// ---------- tooltip ----------
const tip = $("div", { id: "tip" });
document.body.append(tip);
function showTip(event, text) {
  tip.textContent = text;
  tip.style.display = "block";
  const x = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  tip.style.left = x + "px";
  tip.style.top = event.clientY + 16 + "px";
}
const hideTip = () => (tip.style.display = "none");

// ---------- small SVG charts ----------
function spectrumChart(spectrum, shownLambdas, width = 460, height = 130) {
  const s = svg("svg", { width, height, class: "spectrum", role: "img" });
  const n = spectrum.length;
  const max = Math.max(...spectrum.map((x) => Math.abs(x || 0)), 1e-30);
  const mid = height / 2;
  const left = 34;
  const w = (width - left - 4) / n;
  s.append(svg("line", { x1: left, x2: width, y1: mid, y2: mid, stroke: "#8c959f", "stroke-width": 0.6 }));
  const shown = new Set(shownLambdas.map((x) => fmt(x, 5)));
  spectrum.forEach((lam, i) => {
    const h = (Math.abs(lam) / max) * (mid - 8);
    const strong = shown.has(fmt(lam, 5));
    const r = svg("rect", {
      x: left + i * w, y: lam >= 0 ? mid - h : mid, width: Math.max(w - 0.3, 0.6), height: Math.max(h, 0.5),
      fill: lam >= 0 ? (strong ? "#d9480f" : "#f4b38a") : strong ? "#1c64d6" : "#9dbcf0",
    });
    const t = svg("title", {});
    t.textContent = `eigenvalue ${i + 1} of ${n}: \u03bb = ${fmt(lam, 5)}`;
    r.append(t);
    s.append(r);
  });
  for (const [y, v] of [[12, max], [height - 4, -max]]) {
    const t = svg("text", { x: 2, y });
    t.textContent = fmt(v, 2);
    s.append(t);
  }
  return s;
}
function histogramChart(hist, width = 460, height = 110) {
  const s = svg("svg", { width, height, class: "histogram", role: "img" });
  const n = hist.counts.length;
  const max = Math.max(...hist.counts, 1);
  const w = (width - 8) / n;
  hist.counts.forEach((c, i) => {
    const h = c > 0 ? Math.max((Math.log1p(c) / Math.log1p(max)) * (height - 22), 1) : 0;
    const lo = hist.low + ((hist.high - hist.low) * i) / n;
    const r = svg("rect", { x: 4 + i * w, y: height - 16 - h, width: w - 1, height: h, fill: lo + (hist.high - hist.low) / (2 * n) >= 0 ? "#f08c4a" : "#5b8def" });
    const t = svg("title", {});
    t.textContent = `[${fmt(lo, 3)}, ${fmt(lo + (hist.high - hist.low) / n, 3)}): ${c} positions`;
    r.append(t);
    s.append(r);
  });
  for (const [x, v, anchor] of [[4, hist.low, "start"], [width - 4, hist.high, "end"]]) {
    const t = svg("text", { x, y: height - 3, "text-anchor": anchor });
    t.textContent = fmt(v, 3);
    s.append(t);
  }
  return s;
}
function sparkline(spectrum, width = 90, height = 18) {
  const s = svg("svg", { width, height });
  const top = spectrum.slice(0, 24).concat(spectrum.slice(-24));
  const max = Math.max(...top.map((x) => Math.abs(x || 0)), 1e-30);
  const w = width / top.length;
  top.forEach((lam, i) => {
    const h = (Math.abs(lam) / max) * (height / 2);
    s.append(svg("rect", { x: i * w, y: lam >= 0 ? height / 2 - h : height / 2, width: Math.max(w - 0.4, 0.5), height: Math.max(h, 0.3), fill: lam >= 0 ? "#d9480f" : "#1c64d6" }));
  });
  return s;
}

// ---------- contexts ----------
// rows: per token [shown contributions..., rest, total]; column: the one highlighted; names: the columns' names.
function contextList(contexts, column, names, valueName, scale) {
  const box = $("div", { class: "contexts" });
  if (!contexts.length) box.append($("div", { class: "empty", text: "no contexts" }));
  for (const ctx of contexts) {
    const rows = decode(ctx.c, names.length);
    const line = $("div", { class: "ctx" }, $("span", { class: "val", text: fmt(ctx.value, 3), title: valueName }));
    const toks = $("span", { class: "toks" });
    ctx.ids.forEach((id, i) => {
      const value = rows[i][column];
      const text = tokenText(tokenName(id));
      if (text.startsWith(" ")) toks.append(" ");
      const el = $("span", { class: "tok" + (ctx.start + i === ctx.pos ? " center" : ""), text: text.startsWith(" ") ? text.slice(1) : text });
      el.style.backgroundColor = colour(value, scale);
      el.dataset.v = String(value);
      el.addEventListener("mousemove", (e) => {
        const lines = [`${JSON.stringify(tokenName(id))}  (sequence ${ctx.seq}, position ${ctx.start + i})`];
        names.forEach((name, j) => lines.push(`${j === column ? "\u25b6 " : "  "}${name.padEnd(16)} ${signed(rows[i][j], 5)}`));
        showTip(e, lines.join("\n"));
      });
      el.addEventListener("mouseleave", hideTip);
      toks.append(el);
    });
    line.append(toks);
    box.append(line);
  }
  return box;
}
function contextScale(groups, column, columns) {
  let m = 0;
  for (const ctx of groups.flat()) for (const row of decode(ctx.c, columns)) m = Math.max(m, Math.abs(row[column]));
  return m;
}
function tokenList(pairs, cls) {
  const box = $("span", { class: "toklist" });
  for (const [t, s] of pairs) box.append($("span", { class: "t " + cls, title: fmt(s, 3), text: t }));
  return box;
}

// ---------- language-model views ----------
function columnNames(d) {
  return d.eigen.map((e, i) => `e${i + 1} \u03bb=${fmt(e.lambda, 3)}`).concat(["rest", "u\u00b7mlp(x)"]);
}
// token -> where it appears for this direction (read-outs, the tokens its eigenvectors' contexts are about)
function keywords(d) {
  const words = new Map();
  const add = (word, where) => {
    const key = String(word).toLowerCase();
    if (!words.has(key)) words.set(key, new Set());
    words.get(key).add(where);
  };
  d.eigen.forEach((e, slot) => {
    for (const table of [e.readout.unembed, e.readout.embed]) for (const [t] of table.top.concat(table.bottom)) add(t, `read-out e${slot + 1}`);
    for (const ctx of e.top.concat(e.bottom)) add(tokenName(ctx.ids[ctx.pos - ctx.start]), `context e${slot + 1}`);
  });
  return words;
}
const COLUMNS_LM = [
  ["#", (d, i) => i, "num"], ["kind", (d) => d.kind, "text"], ["direction", (d) => d.label, "text"],
  ["spectrum", null, "text"],
  ["\u03bb max", (d) => d.stats.lambda_max, "num"], ["\u03bb min", (d) => d.stats.lambda_min, "num"],
  ["eff. rank", (d) => d.stats.effective_rank, "num"], ["top-k share", (d) => d.stats.top_k_share, "num"],
  ["balance", (d) => d.stats.balance, "num"], ["shown share", (d) => d.stats.shown_share, "num"],
  ["mean u\u00b7mlp", (d) => d.stats.mean_output, "num"], ["max u\u00b7mlp", (d) => d.stats.max_output, "num"],
];
const COLUMNS_CLS = [
  ["class", (d, i) => i, "num"], ["spectrum", null, "text"],
  ["\u03bb max", (d) => d.stats.lambda_max, "num"], ["\u03bb min", (d) => d.stats.lambda_min, "num"],
  ["eff. rank", (d) => d.stats.effective_rank, "num"], ["top-k share", (d) => d.stats.top_k_share, "num"],
  ["balance", (d) => d.stats.balance, "num"], ["accuracy", (d) => d.stats.accuracy, "num"],
];
const state = { sort: 0, desc: false, query: "" };

function overview(main) {
  const lm = DATA.kind !== "classifier";
  const items = lm ? DATA.directions : DATA.classes;
  const columns = lm ? COLUMNS_LM : COLUMNS_CLS;
  main.append($("h2", { text: lm ? `Layer ${DATA.layer}: ${items.length} output directions` : `${DATA.dataset}: ${items.length} classes` }));
  main.append($("p", { class: "note", text: lm
    ? `Each row is an output direction u of blocks.${DATA.layer}.mlp; its interaction matrix Q_u has the eigendecomposition u\u00b7mlp(x) = \u03a3 \u03bb (v\u00b7x')\u00b2, read from the weights. Effective rank (\u2016\u03bb\u2016\u2081/\u2016\u03bb\u2016\u2082)\u00b2, top-k share of \u2016Q_u\u2016\u00b2_F in the ${DATA.k} largest |\u03bb|, balance \u03a3\u03bb/\u03a3|\u03bb|; shown share: the ${DATA.k} shown eigencomponents' share of |u\u00b7mlp(x)| over the token set (${DATA.token_set.description}). Click a row; click a header to sort.`
    : `Each row is a class c: logit_c = \u03a3 \u03bb (v\u00b7e')\u00b2 with e = W_E x. Test accuracy ${pct(DATA.test_accuracy)} on ${DATA.test_images} images. Click a row for its eigen-images and adversarial masks.` }));
  const search = $("input", { type: "search", id: "search", placeholder: lm ? "search a direction or a token (read-outs, top contexts)" : "search a class", value: state.query });
  const count = $("span", { class: "note", id: "count" });
  main.append($("div", { class: "toolbar" }, search, count));
  const table = $("table", { class: "grid", id: "overview" });
  const headRow = $("tr");
  columns.forEach(([name, , type], j) => {
    const th = $("th", { class: type === "text" ? "text" : "", text: name });
    if (columns[j][1]) th.addEventListener("click", () => { state.desc = state.sort === j ? !state.desc : type === "num"; state.sort = j; draw(); });
    headRow.append(th);
  });
  table.append($("thead", {}, headRow));
  const body = $("tbody");
  table.append(body);
  main.append(table);
  const words = items.map((d) => (lm ? keywords(d) : new Map()));
  function draw() {
    headRow.querySelectorAll("th").forEach((th, j) => (th.className = (columns[j][2] === "text" ? "text " : "") + (j === state.sort ? (state.desc ? "sorted-desc" : "sorted-asc") : "")));
    const q = state.query.trim().toLowerCase();
    const key = columns[state.sort][1];
    let order = items.map((d, i) => i).filter((i) => !q || items[i].label.toLowerCase().includes(q) || words[i].has(q));
    order.sort((a, b) => {
      const x = key(items[a], a), y = key(items[b], b);
      const c = typeof x === "string" ? x.localeCompare(y) : (x ?? -Infinity) - (y ?? -Infinity);
      return state.desc ? -c : c;
    });
    body.replaceChildren();
    for (const i of order) {
      const d = items[i];
      const tr = $("tr", { "data-index": i });
      tr.addEventListener("click", () => (location.hash = (lm ? "#d=" : "#c=") + i));
      columns.forEach(([name, get, type]) => {
        if (!get) { tr.append($("td", { class: "text" }, sparkline(d.spectrum))); return; }
        const v = get(d, i);
        const td = $("td", { class: type === "text" ? "text" + (name === "direction" ? " label" : "") : "" , text: type === "num" ? (name === "#" || name === "class" ? String(v) : fmt(v, 4)) : v });
        if (name === "direction" && q && !d.label.toLowerCase().includes(q) && words[i].has(q)) {
          td.append($("span", { class: "kind matched", text: "  " + [...words[i].get(q)].slice(0, 3).join(", ") }));
        }
        tr.append(td);
      });
      body.append(tr);
    }
    count.textContent = `${order.length} of ${items.length} shown`;
  }
  search.addEventListener("input", () => { state.query = search.value; draw(); });
  draw();
}

function navigation(index, total, prefix) {
  const nav = $("div", { class: "nav" }, $("a", { href: "#", text: "\u2190 overview" }));
  if (index > 0) nav.append($("a", { href: `${prefix}${index - 1}`, text: "previous" }));
  if (index < total - 1) nav.append($("a", { href: `${prefix}${index + 1}`, text: "next" }));
  return nav;
}
function chips(pairs) {
  const box = $("div", { class: "chips" });
  for (const [name, value] of pairs) box.append($("span", { class: "chip" }, name + " ", $("b", { text: value })));
  return box;
}

function directionPage(main, index) {
  const d = DATA.directions[index];
  const names = columnNames(d);
  const columns = names.length;
  main.append(navigation(index, DATA.directions.length, "#d="));
  const kindText = { token: "token (unembedding) direction", contrast: "token contrast direction (u_t minus the mean of the others)", feature: "SAE output feature (encoder row e_j)" }[d.kind];
  main.append($("h2", { id: "direction-title" }, $("span", { class: "label", text: d.label }), $("span", { class: "kind", text: "  " + kindText })));
  const st = d.stats;
  const list = [["\u03bb max", fmt(st.lambda_max)], ["\u03bb min", fmt(st.lambda_min)], ["effective rank", fmt(st.effective_rank)],
    [`top-${DATA.k} share`, pct(st.top_k_share)], ["balance", signed(st.balance, 3)], ["shown share of |u\u00b7mlp|", pct(st.shown_share)],
    ["mean u\u00b7mlp(x)", fmt(st.mean_output)], ["range", `${fmt(st.min_output)} \u2026 ${fmt(st.max_output)}`]];
  if (st.offset !== undefined) list.push(["pre-activation offset", signed(st.offset)]);
  main.append(chips(list));
  const spec = $("div", { class: "panel" }, $("h3", { text: `Eigenvalue spectrum of Q_u (${d.spectrum.length})` }),
    spectrumChart(d.spectrum, d.eigen.map((e) => e.lambda)),
    $("div", { class: "legend" }, "dark bars: the eigenvectors shown below; hover a bar for \u03bb"));
  const hist = $("div", { class: "panel" }, $("h3", { text: "u\u00b7mlp(x) over the token set" }), histogramChart(d.output.histogram),
    $("div", { class: "legend" }, `log-scaled counts over ${DATA.token_set.n_tokens} positions`));
  main.append($("div", { class: "row2" }, spec, hist));
  const out = $("div", { class: "card", id: "output-card" }, $("div", { class: "head" }, $("span", { class: "title", text: "Direction output u\u00b7mlp(x)" }),
    $("span", { class: "note", text: "highlight: u\u00b7mlp(x) at each token (the model's own hook_out); hover a token for its split over eigencomponents" })));
  const outScale = contextScale([d.output.top, d.output.bottom], columns - 1, columns);
  out.append($("div", { class: "body" }, $("div", {},
    $("div", { class: "sub", text: "top contexts" }), contextList(d.output.top, columns - 1, names, "u\u00b7mlp(x)", outScale),
    $("div", { class: "sub", text: "bottom contexts" }), contextList(d.output.bottom, columns - 1, names, "u\u00b7mlp(x)", outScale)),
    $("div", { class: "note", text: "The split at a token: the shown eigencomponents' \u03bb (v\u00b7x')\u00b2, the rest of the spectrum, and the total. The first terms sum to the total." })));
  main.append(out);
  main.append($("h3", { text: `Eigenvectors (${d.eigen.length} shown: the largest positive and most negative \u03bb)` }));
  d.eigen.forEach((e, slot) => {
    const card = $("div", { class: "card eigen", "data-slot": slot });
    card.append($("div", { class: "head" },
      $("span", { class: "title " + (e.lambda >= 0 ? "pos" : "neg"), text: `e${slot + 1}: \u03bb = ${signed(e.lambda, 5)}` }),
      $("span", { class: "chip" }, "share of |u\u00b7mlp| ", $("b", { text: pct(e.share) })),
      $("span", { class: "chip" }, "mean contribution ", $("b", { text: signed(e.mean, 3) })),
      $("span", { class: "note", text: `eigenvalue ${e.index + 1} by |\u03bb|; highlight: \u03bb (v\u00b7x')\u00b2 at each token; contexts ranked by v\u00b7x'` })));
    const scale = contextScale([e.top, e.bottom], slot, columns);
    const left = $("div", {},
      $("div", { class: "sub", text: "top contexts (v\u00b7x' most positive)" }), contextList(e.top, slot, names, "v\u00b7x'", scale),
      $("div", { class: "sub", text: "bottom contexts (v\u00b7x' most negative)" }), contextList(e.bottom, slot, names, "v\u00b7x'", scale));
    const right = $("div", { class: "readout" }, $("div", { class: "sub", text: "v\u00b7x' over the token set" }), histogramChart(e.histogram, 300, 80));
    for (const [key, title] of [["embed", "read-in: tokens whose embedding lies along \u00b1v"], ["unembed", "read-out: logits \u00b1v raises"]]) {
      right.append($("div", { class: "sub", text: title }));
      right.append($("div", {}, "+v ", tokenList(e.readout[key].top, "up")));
      right.append($("div", {}, "\u2212v ", tokenList(e.readout[key].bottom, "down")));
    }
    right.append($("div", { class: "note", text: "(v\u00b7x')\u00b2 does not see v's sign: both ends drive the component." }));
    card.append($("div", { class: "body" }, left, right));
    main.append(card);
  });
  if (d.interactions) main.append(interactionsView(d));
}

function heatmap(inter) {
  const n = inter.features.length, cell = 26, pad = 44, size = pad + n * cell + 4;
  const s = svg("svg", { viewBox: `0 0 ${size} ${size}`, width: size, class: "heatmap", style: "max-width: 100%; height: auto" });
  const max = Math.max(...inter.matrix.flat().map(Math.abs), 1e-30);
  inter.features.forEach((f, i) => {
    const a = svg("text", { x: pad - 4, y: pad + i * cell + cell * 0.65, "text-anchor": "end" });
    a.textContent = f;
    s.append(a);
    const b = svg("text", { x: 0, y: 0, transform: `translate(${pad + i * cell + cell * 0.65}, ${pad - 4}) rotate(-60)` });
    b.textContent = f;
    s.append(b);
    inter.features.forEach((g, j) => {
      const v = inter.matrix[i][j];
      const r = svg("rect", { x: pad + j * cell, y: pad + i * cell, width: cell - 1, height: cell - 1, fill: colour(v, max).replace("0.85)", "1)"), stroke: "#eaeef2" });
      const t = svg("title", {});
      t.textContent = `input features ${f} \u00d7 ${g}: ${signed(v, 4)}`;
      r.append(t);
      s.append(r);
    });
  });
  return s;
}
function interactionsView(d) {
  const inter = d.interactions;
  const box = $("div", { class: "card", id: "interactions" });
  box.append($("div", { class: "head" }, $("span", { class: "title", text: "Input-feature interactions D Q_u D\u1d40" }),
    $("span", { class: "note", text: `input SAE features i, j write 2 M_ij f_i f_j (M_ii f_i\u00b2 on the diagonal) along u; \u2016M\u2016_F = ${fmt(inter.norm)}` })));
  const label = (f) => {
    const ids = inter.feature_tokens[String(f)] || [];
    return `feature ${f}` + (ids.length ? ` (${[...new Set(ids.map(tokenName))].slice(0, 4).join(", ")})` : "");
  };
  const pairs = $("div", { class: "pairs" });
  inter.pairs.forEach((p) => {
    const names = [`term ${p.i === p.j ? "M_ii f_i\u00b2" : "2 M_ij f_i f_j"}`, `f_${p.i}`, `f_${p.j}`];
    const scale = contextScale([p.contexts], 0, 3);
    pairs.append($("div", { class: "pair" },
      $("div", {}, $("b", { class: p.value >= 0 ? "pos" : "neg", text: `${label(p.i)} \u00d7 ${label(p.j)}` }),
        $("span", { class: "note", text: `   M_ij = ${signed(p.value, 4)}, ${pct(p.share)} of \u2016M\u2016_F, both active at ${p.both_active} positions` })),
      contextList(p.contexts, 0, names, "pair term", scale)));
  });
  box.append($("div", { class: "body" }, $("div", {}, $("div", { class: "sub", text: "top interacting pairs and where they fire together" }), pairs),
    $("div", {}, $("div", { class: "sub", text: "strongest entries" }), heatmap(inter),
      $("div", { class: "legend" }, "orange: the pair raises u, blue: lowers it; hover a cell"))));
  return box;
}

// ---------- classifier views ----------
function pixelCanvas(values, shape, diverging, small) {
  const [h, w] = shape;
  const c = $("canvas", { width: w, height: h, class: "px" + (small ? " small" : "") });
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(w, h);
  const max = Math.max(...values.slice(0, h * w).map(Math.abs), 1e-30);
  for (let i = 0; i < h * w; i++) {
    const v = values[i];
    let r, g, b;
    if (diverging) {
      const a = Math.min(1, Math.abs(v) / max);
      [r, g, b] = v >= 0 ? [255, 255 - 167 * a, 255 - 243 * a] : [255 - 218 * a, 255 - 156 * a, 255 - 20 * a];
    } else {
      r = g = b = 255 - 255 * Math.max(0, Math.min(1, v));
    }
    img.data.set([r, g, b, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  return c;
}
function classPage(main, index) {
  const c = DATA.classes[index];
  const shape = DATA.image_shape;
  main.append(navigation(index, DATA.classes.length, "#c="));
  main.append($("h2", { text: `Class ${c.label}` }));
  const st = c.stats;
  main.append(chips([["\u03bb max", fmt(st.lambda_max)], ["\u03bb min", fmt(st.lambda_min)], ["effective rank", fmt(st.effective_rank)],
    [`top-${DATA.k} share`, pct(st.top_k_share)], ["balance", signed(st.balance, 3)], ["test accuracy", pct(st.accuracy)]]));
  const mean = $("div", { class: "panel" }, $("h3", { text: "Mean test image" }), pixelCanvas(c.mean_image, shape, false));
  main.append($("div", { class: "row2" }, $("div", { class: "panel" }, $("h3", { text: `Eigenvalue spectrum of Q_${c.label}` }), spectrumChart(c.spectrum, c.eigen.map((e) => e.lambda))), mean));
  main.append($("h3", { text: "Eigen-images W_E\u1d40 v (positive \u03bb vote for the class, negative against)" }));
  main.append($("div", { class: "legend" }, "pixels: ", $("span", { class: "sw", style: "background:linear-gradient(90deg,#2563eb,#fff,#ea580c)" }), " negative \u2026 positive (scaled per image); below each: the test images that drive it most, with \u03bb (v\u00b7e')\u00b2"));
  const row = $("div", { class: "imgrow", id: "eigen-images" });
  c.eigen.forEach((e, slot) => {
    const cell = $("div", { class: "imgcell eigen", "data-slot": slot }, pixelCanvas(e.image, shape, true),
      $("div", { class: e.lambda >= 0 ? "pos" : "neg", text: `\u03bb ${signed(e.lambda, 4)}` }), $("div", { class: "note", text: `share ${pct(e.share)}` }));
    const tops = $("div", { class: "topimgs" });
    for (const [i, v] of e.top_images) {
      const pixels = DATA.images[String(i)];
      tops.append($("div", { class: "imgcell", title: `test image ${i} (label ${pixels[pixels.length - 1]}): ${fmt(v, 4)}` }, pixelCanvas(pixels, shape, false, true), $("div", { class: "note", text: fmt(v, 2) })));
    }
    cell.append(tops);
    row.append(cell);
  });
  main.append(row);
  main.append($("h3", { text: `Adversarial masks towards ${c.label} (L2 norm ${fmt(DATA.mask_norm, 3)}, a quarter of the mean image's)` }));
  const masks = $("div", { class: "imgrow", id: "masks" });
  for (const [method, m] of Object.entries(c.masks)) {
    masks.append($("div", { class: "imgcell" }, pixelCanvas(m.image, shape, true), $("div", { text: method === "eigen" ? "top eigen-image" : "pinv of all classes'" }),
      $("div", { class: "note", text: `sends ${pct(m.rate)} of other test images to ${c.label}` }), $("div", { class: "note", text: `permuted pixels: ${pct(m.baseline_rate)}` })));
  }
  main.append(masks);
}

// ---------- routing ----------
function route() {
  const main = document.getElementById("main");
  main.replaceChildren();
  hideTip();
  const m = location.hash.match(/^#([dc])=(\d+)$/);
  if (m && m[1] === "d" && DATA.directions && DATA.directions[+m[2]]) directionPage(main, +m[2]);
  else if (m && m[1] === "c" && DATA.classes && DATA.classes[+m[2]]) classPage(main, +m[2]);
  else overview(main);
  window.scrollTo(0, 0);
}
window.addEventListener("hashchange", route);
route();
