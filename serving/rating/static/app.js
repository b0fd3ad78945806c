// natal rating page: sign in, rank the responses (drag, or keys 1..N), mark ties or
// "all bad", submit, get the next prompt. Every text from the server is put on the page with
// textContent, never innerHTML: a response containing <script> shows as text.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("natal-token"), item: null, order: [], labels: {},
                picked: 0, ties: new Set(), dragged: null, last: null };

async function api(path, body) {
  const init = { headers: { Authorization: "Bearer " + state.token } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(data.error || response.statusText), { status: response.status });
  return data;
}

function show(section) {
  for (const id of ["signin", "rating", "done"]) $(id).hidden = id !== section;
}

function render(data) {
  $("who").textContent = "rater: " + data.rater;
  const p = data.progress;
  $("progress").textContent = `${p.done} done / ${p.remaining} remaining`;
  state.last = data;
  state.item = data.item;
  if (!data.item) { show("done"); return; }
  state.order = data.item.responses.map((r) => r.index);
  state.labels = {};
  data.item.responses.forEach((r, i) => { state.labels[r.index] = i + 1; });
  state.picked = 0;
  state.ties = new Set();
  $("all-bad").checked = false;
  $("rating-error").textContent = "";
  $("prompt").textContent = data.item.prompt;
  show("rating");
  drawCards();
}

const tieKey = (a, b) => (a < b ? `${a},${b}` : `${b},${a}`);
const textOf = (index) => state.item.responses.find((r) => r.index === index).text;

function drawCards() {
  // ties only hold between neighbours: drop those a reordering separated
  const adjacent = new Set(state.order.slice(1).map((b, i) => tieKey(state.order[i], b)));
  for (const key of [...state.ties]) if (!adjacent.has(key)) state.ties.delete(key);
  const list = $("responses");
  list.replaceChildren();
  state.order.forEach((index, position) => {
    const card = document.createElement("li");
    card.className = "card" + (position < state.picked ? " picked" : "");
    card.draggable = true;
    card.dataset.index = index;
    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = position + 1;
    const body = document.createElement("div");
    const key = document.createElement("span");
    key.className = "key";
    key.textContent = state.labels[index];
    key.title = "press this key to rank the response next";
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = textOf(index);
    body.append(key, text);
    card.append(rank, body);
    const next = state.order[position + 1];
    if (next !== undefined) {
      const tied = state.ties.has(tieKey(index, next));
      const tie = document.createElement("button");
      tie.type = "button";
      tie.className = "tie";
      tie.textContent = tied ? "tied with next" : "tie with next";
      tie.setAttribute("aria-pressed", String(tied));
      tie.addEventListener("click", () => {
        const k = tieKey(index, next);
        state.ties.has(k) ? state.ties.delete(k) : state.ties.add(k);
        drawCards();
      });
      if (tied) card.classList.add("tied");
      card.append(tie);
    }
    card.addEventListener("dragstart", (e) => {
      state.dragged = index;
      card.classList.add("dragging");
      e.dataTransfer.effectAllowed = "move";
      e.dataTransfer.setData("text/plain", String(index));
    });
    card.addEventListener("dragend", () => card.classList.remove("dragging"));
    card.addEventListener("dragover", (e) => e.preventDefault());
    card.addEventListener("drop", (e) => {
      e.preventDefault();
      moveTo(state.dragged, state.order.indexOf(index));
    });
    list.append(card);
  });
}

function moveTo(index, position) {
  if (index === null || index === undefined) return;
  const from = state.order.indexOf(index);
  if (from < 0 || from === position) return;
  state.order.splice(from, 1);
  state.order.splice(position, 0, index);
  state.dragged = null;
  drawCards();
}

function pickByKey(label) {
  const index = Number(Object.keys(state.labels).find((i) => state.labels[i] === label));
  if (Number.isNaN(index) || state.order.indexOf(index) < state.picked) return;
  moveTo(index, state.picked);
  state.picked += 1;
  drawCards();
}

async function submit() {
  const pairs = [...state.ties].map((k) => k.split(",").map(Number));
  try {
    render(await api("api/ratings", { item_id: state.item.id, ranking: state.order, ties: pairs,
                                      all_bad: $("all-bad").checked }));
  } catch (err) {
    if (err.status === 401) return signOut("Your token is no longer valid.");
    $("rating-error").textContent = err.message;
  }
}

function signOut(message) {
  sessionStorage.removeItem("natal-token");
  state.token = null;
  $("signin-error").textContent = message || "";
  $("who").textContent = "";
  $("progress").textContent = "";
  show("signin");
}

async function signIn(token) {
  state.token = token;
  try {
    render(await api("api/next"));
    sessionStorage.setItem("natal-token", token);
    $("signin-error").textContent = "";
  } catch (err) {
    signOut(err.status === 401 ? "Unknown token." : err.message);
  }
}

$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  signIn($("token").value.trim());
});
$("submit").addEventListener("click", submit);
$("reset").addEventListener("click", () => { if (state.last) render(state.last); });

document.addEventListener("keydown", (e) => {
  if ($("rating").hidden || e.target.id === "token" || e.ctrlKey || e.metaKey || e.altKey) return;
  if (/^[1-9]$/.test(e.key)) { pickByKey(Number(e.key)); e.preventDefault(); }
  else if (e.key === "Escape") $("reset").click();
  else if (e.key === "Enter") { e.preventDefault(); submit(); }
});

if (state.token) signIn(state.token); else show("signin");
