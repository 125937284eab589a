// What every screen shares: the API client and the session's key, the language, times,
// the display of the API's errors next to their fields, paging, and small widgets.
// Text from data is always put in the page as text: htm escapes every ${value}, and
// nothing here sets innerHTML.
import { html, useEffect, useRef, useState } from "./preact-htm.js";
import { DICTIONARIES } from "./i18n.js";

export { html };

// The API is beside the console: everything before "/admin" of this page's path (the
// stage's prefix when deployed, "/v1/admin" calls "/v1/api/..."; nothing locally).
export const API_BASE = location.pathname.slice(0, location.pathname.lastIndexOf("/admin"));
export const PAGE_SIZE = 20;

// The key lives for the browser session only (sessionStorage): closing the tab signs out.
const KEY_ITEM = "notify.apiKey";
export const session = {
  key: () => sessionStorage.getItem(KEY_ITEM),
  signIn: (key) => sessionStorage.setItem(KEY_ITEM, key),
  signOut: () => sessionStorage.removeItem(KEY_ITEM),
};

// An answer in the API's error format: {"error", "message", "fields"} (docs/SPEC.md).
export class ApiError extends Error {
  constructor(status, body) {
    const message = body && typeof body.message === "string" ? body.message : "";
    super(message || t("error.http", { status }));
    this.status = status;
    this.code = body && typeof body.error === "string" ? body.error : "";
    this.fields = body && body.fields && typeof body.fields === "object" ? body.fields : {};
  }
}

let unauthorized = () => {};
export function onUnauthorized(handler) {
  unauthorized = handler;
}

// Every call goes through the public API with the operator's key; a 401 (a key revoked,
// or wrong) ends the session. `key` is given only by the sign-in check.
export async function api(method, path, { body, query, key } = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(name, String(value));
  }
  const search = params.toString();
  const headers = {
    Authorization: `Bearer ${key ?? session.key() ?? ""}`,
    Accept: "application/json",
  };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API_BASE + path + (search ? `?${search}` : ""), init);
  } catch {
    throw new ApiError(0, { error: "network", message: t("error.network") });
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (response.status === 401 && key === undefined) {
    session.signOut();
    unauthorized();
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// --- language ---------------------------------------------------------------------------

export const LANGUAGES = { en: "English", ru: "Русский" };
const LANGUAGE_ITEM = "notify.language";
let current = firstLanguage();

function firstLanguage() {
  const saved = localStorage.getItem(LANGUAGE_ITEM);
  if (saved && saved in DICTIONARIES) return saved;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const base = String(tag).slice(0, 2).toLowerCase();
    if (base in DICTIONARIES) return base;
  }
  return "en";
}

export const language = () => current;

export function setLanguage(code) {
  current = code in DICTIONARIES ? code : "en";
  localStorage.setItem(LANGUAGE_ITEM, current);
  document.documentElement.lang = current;
}

export function t(id, vars = {}) {
  const text = DICTIONARIES[current][id] ?? DICTIONARIES.en[id] ?? id;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

// A text with a count: the language's plural form of `id` ("id.one", "id.few", ...).
export function tn(id, count, vars = {}) {
  const form = new Intl.PluralRules(current).select(count);
  const table = DICTIONARIES[current];
  const key = `${id}.${form}` in table ? `${id}.${form}` : `${id}.other`;
  return t(key, { count: formatNumber(count), ...vars });
}

export const formatNumber = (n) => new Intl.NumberFormat(current).format(n);

// --- time: shown in the operator's zone, which the header names ------------------------

export const TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return new Intl.DateTimeFormat(current, { dateStyle: "medium", timeStyle: "medium" }).format(date);
}

const pad = (n) => String(n).padStart(2, "0");

// An instant as a datetime-local input shows it (local time, to the minute).
export function toLocalInput(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// A datetime-local value (local time, no offset) as the API takes it: UTC with Z. What is
// not a date goes as typed, and the API's answer names the field.
export function fromLocalInput(value) {
  const d = new Date(value);
  return value && !Number.isNaN(d.getTime()) ? d.toISOString().replace(/\.\d{3}Z$/, "Z") : value;
}

// --- errors next to their fields --------------------------------------------------------

// `fields` are named by the request's JSON paths ("filter.tags.0", "phones.1"): each
// shows next to the input named by its path or a prefix of it.
const covers = (name, field) => field === name || field.startsWith(`${name}.`);

export function fieldError(error, name) {
  if (!error) return "";
  return Object.entries(error.fields)
    .filter(([field]) => covers(name, field))
    .map(([, text]) => String(text))
    .join("; ");
}

// One labelled input with its hint and its error; `input` renders the control with the
// attributes that tie it to them.
export function Field({ id, label, error, name, hint, input }) {
  const problem = fieldError(error, name);
  const described = [hint && `${id}-hint`, problem && `${id}-error`].filter(Boolean).join(" ");
  const attrs = {
    id,
    name,
    "aria-invalid": problem ? "true" : undefined,
    "aria-describedby": described || undefined,
  };
  return html`<div class=${problem ? "field invalid" : "field"}>
    <label for=${id}>${label}</label>
    ${input(attrs)}
    ${hint && html`<p class="hint" id=${`${id}-hint`}>${hint}</p>`}
    ${problem && html`<p class="field-error" id=${`${id}-error`} data-field=${name}>${problem}</p>`}
  </div>`;
}

// The error's message at the top of its form, with the fields no input of the form shows.
export function FormError({ error, known = [] }) {
  if (!error) return null;
  const others = Object.entries(error.fields).filter(([f]) => !known.some((k) => covers(k, f)));
  return html`<div class="form-error" role="alert">
    <p>${error.message}</p>
    ${others.length > 0 &&
    html`<ul>
      ${others.map(([field, text]) => html`<li key=${field}><code>${field}</code>: ${String(text)}</li>`)}
    </ul>`}
  </div>`;
}

// --- paging, polling, widgets ------------------------------------------------------------

// Cursor pages: the cursors of the pages seen, so Previous goes back.
export function usePager(first = null) {
  const [stack, setStack] = useState([first]);
  return {
    cursor: stack[stack.length - 1],
    number: stack.length,
    next: (cursor) => setStack([...stack, cursor]),
    previous: () => setStack(stack.slice(0, -1)),
    reset: () => setStack([first]),
  };
}

// `next` is the page's "next" cursor (null on the last page).
export function Pager({ pager, next, label }) {
  if (pager.number === 1 && !next) return null;
  return html`<nav class="pager" aria-label=${label}>
    <button type="button" onClick=${pager.previous} disabled=${pager.number === 1}>
      ${t("pager.previous")}
    </button>
    <span>${t("pager.page", { n: pager.number })}</span>
    <button type="button" onClick=${() => pager.next(next)} disabled=${!next}>
      ${t("pager.next")}
    </button>
  </nav>`;
}

// Call `callback` every `ms` while `active` (and the screen is shown).
export function useInterval(callback, ms, active) {
  const saved = useRef(callback);
  saved.current = callback;
  useEffect(() => {
    if (!active) return undefined;
    const timer = setInterval(() => saved.current(), ms);
    return () => clearInterval(timer);
  }, [ms, active]);
}

export function useDebounced(value, ms) {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

// Loads `load()` again whenever `deps` change, dropping answers that came too late.
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const [version, setVersion] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState((s) => ({ data: s.data, error, loading: false })),
    );
    return () => {
      live = false;
    };
  }, [...deps, version]);
  return { ...state, reload: () => setVersion((v) => v + 1) };
}

// A status's name; a mailing's own where its language says it otherwise than a message's
// (Russian: a cancelled mailing is "Отменена", a cancelled message "Отменено").
export function statusText(status, { mailing = false } = {}) {
  const own = `mailingStatus.${status}`;
  return mailing && own in DICTIONARIES[current] ? t(own) : t(`status.${status}`);
}

export function Status({ status, mailing = false }) {
  return html`<span class=${`status status-${status}`}>${statusText(status, { mailing })}</span>`;
}

// A mailing's text cut short enough to name a control ("Progress of “Spring sale”").
export function shortText(text, max = 60) {
  const flat = String(text).replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

// Progress of a mailing: its messages no longer pending out of all of them. `text` (the
// mailing's) gives each bar its own accessible name: a list of bars all named "Progress"
// tells a screen reader nothing of which is which.
export function Progress({ total, counts, status, id, text }) {
  const done = Math.max(0, total - (counts.pending || 0));
  const percent = total > 0 ? Math.floor((done * 100) / total) : status === "finished" ? 100 : 0;
  const name = text === undefined ? t("progress.label") : t("progress.of", { text: shortText(text) });
  return html`<div class="progress" data-percent=${percent} id=${id}>
    <progress max="100" value=${percent} aria-label=${name}></progress>
    <span>${t("progress.text", { done: formatNumber(done), total: formatNumber(total), percent })}</span>
  </div>`;
}

// A button that asks before doing something that cannot be undone.
export function ConfirmButton({ label, question, onConfirm, disabled }) {
  const [asking, setAsking] = useState(false);
  // The button that had focus is replaced: focus goes to the question's "yes", and back to
  // the button after "no" (else it falls to the page, and a keyboard user starts over).
  const trigger = useRef(null);
  const yes = useRef(null);
  const answered = useRef(false);
  useEffect(() => {
    if (asking && yes.current) yes.current.focus();
    else if (!asking && answered.current && trigger.current) trigger.current.focus();
  }, [asking]);
  if (!asking) {
    return html`<button type="button" class="danger" ref=${trigger} disabled=${disabled}
      onClick=${() => { answered.current = true; setAsking(true); }}>
      ${label}
    </button>`;
  }
  return html`<span class="confirm" role="group" aria-label=${question}>
    <span>${question}</span>
    <button type="button" class="danger" ref=${yes} onClick=${() => { setAsking(false); onConfirm(); }}>
      ${t("action.confirm", { action: label })}
    </button>
    <button type="button" onClick=${() => setAsking(false)}>${t("action.keep")}</button>
  </span>`;
}

// The time from navigation start to the first screen shown with its data
// (docs/performance.md reads it from the page).
export function markReady() {
  const root = document.documentElement;
  if (!root.dataset.readyMs) root.dataset.readyMs = String(Math.round(performance.now()));
}

export function navigate(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

export function useTitle(text) {
  useEffect(() => {
    document.title = `${text} · ${t("app.title")}`;
  }, [text]);
}
