// One task's statistics: counts by status and progress (refreshed every 2 s until the
// task is finished or cancelled; a scheduled one at its start, at most every 30 s),
// sends over time as a chart, its messages by status with pages, its controls, test
// sends, and the CSV export.
import { useEffect, useRef, useState } from "./preact-htm.js";
import {
  Field,
  FormError,
  PAGE_SIZE,
  Pager,
  Progress,
  Status,
  api,
  formatNumber,
  formatTime,
  html,
  markReady,
  navigate,
  statusText,
  t,
  useInterval,
  useLoad,
  usePager,
  useTitle,
} from "./lib.js";
import { TaskControls, summaryOfFilter } from "./tasks.js";

const STATUSES = ["pending", "sent", "failed", "expired", "cancelled", "suppressed"];
const CLOSED = ["finished", "cancelled"];
const REFRESH_MS = 2000;
const EXPORT_POLL_MS = 1000;
// A scheduled mailing changes at its start: read again then, or every 30 s if sooner.
const SCHEDULED_REFRESH_MS = 30000;
const refreshMs = (task) =>
  task.status === "scheduled"
    ? Math.min(
        SCHEDULED_REFRESH_MS,
        Math.max(REFRESH_MS, Math.ceil((Date.parse(task.start_time) - Date.now()) / 1000) * 1000),
      )
    : REFRESH_MS;
// Colour, dash and name tell the series apart (colour is never the only sign).
const SERIES = {
  sent: { stroke: "#1a7f37", dash: [] },
  failed: { stroke: "#b42318", dash: [6, 3] },
  expired: { stroke: "#8a5a00", dash: [2, 3] },
  cancelled: { stroke: "#57606a", dash: [10, 4] },
  suppressed: { stroke: "#6e40c9", dash: [4, 2, 1, 2] },
};

// Sends over time (GET /api/tasks/{id}/timeline): sent and failed, and the other final
// statuses when any has a count. Without points (or without the route) it says so.
function Timeline({ id, tick }) {
  const box = useRef(null);
  const plot = useRef(null);
  const [state, setState] = useState({ points: null, error: null });

  useEffect(() => {
    let live = true;
    api("GET", `/api/tasks/${id}/timeline`).then(
      (data) => live && setState({ points: data.points, error: null }),
      (error) => live && setState({ points: [], error: error.status === 404 ? null : error }),
    );
    return () => {
      live = false;
    };
  }, [id, tick]);

  const points = state.points || [];
  const shown = Object.keys(SERIES).filter(
    (name) => name === "sent" || name === "failed" || points.some((p) => p[name] > 0),
  );
  const key = shown.join(",");

  useEffect(() => {
    if (points.length === 0) {
      if (plot.current) plot.current.destroy();
      plot.current = null;
      return;
    }
    const data = [points.map((p) => Date.parse(p.at) / 1000), ...shown.map((name) => points.map((p) => p[name]))];
    let cancelled = false;
    // The chart library loads with the first chart, not with the console.
    import("./uPlot.esm.js").then(({ default: UPlot }) => {
      if (cancelled || !box.current) return;
      if (plot.current && plot.current.series.length === shown.length + 1) {
        plot.current.setData(data);
        return;
      }
      if (plot.current) plot.current.destroy();
      plot.current = new UPlot(
        {
          width: Math.max(320, box.current.clientWidth || 640),
          height: 240,
          series: [{}, ...shown.map((name) => ({ label: t(`status.${name}`), width: 2, ...SERIES[name] }))],
          axes: [{}, { label: t("chart.messages") }],
        },
        data,
        box.current,
      );
    });
    return () => {
      cancelled = true;
    };
  }, [state.points, key]);

  useEffect(() => () => plot.current && plot.current.destroy(), []);

  const totals = shown.map((name) => `${t(`status.${name}`)}: ${formatNumber(points.reduce((n, p) => n + p[name], 0))}`);
  return html`<figure class="chart" aria-labelledby="chart-title">
    <figcaption id="chart-title">${t("chart.title")}</figcaption>
    ${state.error && html`<p class="field-error">${state.error.message}</p>`}
    ${points.length === 0
      ? html`<p class="empty" id="chart-empty">${t("chart.none")}</p>`
      : html`<p class="visually-hidden">${totals.join("; ")}</p>`}
    <div ref=${box} id="chart" aria-hidden="true"></div>
  </figure>`;
}

function TestSend({ id }) {
  const [phones, setPhones] = useState("");
  const [error, setError] = useState(null);
  const [results, setResults] = useState(null);
  const [busy, setBusy] = useState(false);
  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const list = phones.split(/[\s,;]+/).filter(Boolean);
      setResults((await api("POST", `/api/tasks/${id}/test`, { body: { phones: list } })).results);
    } catch (problem) {
      setError(problem);
      setResults(null);
    } finally {
      setBusy(false);
    }
  }
  return html`<form class="card" id="test-send-form" onSubmit=${submit} noValidate aria-labelledby="test-title">
    <h2 id="test-title">${t("test.title")}</h2>
    <p class="hint">${t("test.lead")}</p>
    <${FormError} error=${error} known=${["phones"]} />
    <${Field} id="test-phones" name="phones" label=${t("test.phones")} hint=${t("test.phonesHint")} error=${error}
      input=${(a) => html`<input ...${a} value=${phones} onInput=${(e) => setPhones(e.target.value)} />`} />
    <div class="actions"><button type="submit" disabled=${busy}>${t("test.send")}</button></div>
    ${results && html`<ul class="results" id="test-results" aria-live="polite">
      ${results.map((r) => html`<li key=${r.phone}>${r.phone}: <${Status} status=${r.status} />
        ${r.error && html` — ${r.error}`}</li>`)}
    </ul>`}
  </form>`;
}

// The CSV export (POST /api/exports/, then GET until done): the file comes as a link to
// its pre-signed URL, a navigation rather than a fetch, so the page's connect-src needs
// no bucket address.
function Export({ id }) {
  const [job, setJob] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const running = Boolean(job && job.status === "running");
  useInterval(async () => {
    try {
      setJob(await api("GET", `/api/exports/${job.id}`));
    } catch (problem) {
      setError(problem);
      setJob(null);
    }
  }, EXPORT_POLL_MS, running);

  async function start() {
    setBusy(true);
    setError(null);
    try {
      setJob(await api("POST", "/api/exports/", { body: { task_id: Number(id) } }));
    } catch (problem) {
      setError(problem);
    } finally {
      setBusy(false);
    }
  }
  const rows = formatNumber(job ? job.rows || 0 : 0);
  return html`<section class="card" aria-labelledby="export-title">
    <h2 id="export-title">${t("export.title")}</h2>
    <p class="hint">${t("export.lead")}</p>
    <${FormError} error=${error} />
    <div class="actions">
      <button type="button" id="export-start" onClick=${start} disabled=${busy || running}>${t("export.start")}</button>
    </div>
    <p role="status" id="export-status">
      ${running ? t("export.running", { rows }) : ""}
      ${job && job.status === "done" && html`<a id="export-download" href=${job.download_url} download>${t("export.done", { rows })}</a>`}
      ${job && job.status === "failed" ? t("export.failed") : ""}
    </p>
  </section>`;
}

export function TaskStats({ id }) {
  useTitle(t("stats.title", { id }));
  const [status, setStatus] = useState("");
  const [tick, setTick] = useState(0);
  const [message, setMessage] = useState("");
  const pager = usePager();
  const stats = useLoad(async () => {
    try {
      return await api("GET", `/api/tasks/${id}/stats`, {
        query: { limit: PAGE_SIZE, cursor: pager.cursor, status },
      });
    } finally {
      markReady();
    }
  }, [id, status, pager.cursor, tick]);
  const data = stats.data;
  const task = data && data.task;
  useInterval(() => setTick((n) => n + 1), task ? refreshMs(task) : REFRESH_MS, Boolean(task && !CLOSED.includes(task.status)));

  if (!data) {
    return html`<h1>${t("stats.title", { id })}</h1>
      ${stats.error ? html`<${FormError} error=${stats.error} />` : html`<p>${t("loading")}</p>`}
      <p><a href="#/tasks">${t("stats.back")}</a></p>`;
  }
  const rate = task.rate_limit ? t("stats.rate", { n: formatNumber(task.rate_limit) }) : t("stats.noRate");
  const sendWindow = task.send_window ? t("stats.window", task.send_window) : t("stats.noWindow");
  // A refresh that failed (the network, the task deleted elsewhere) is told (FormError),
  // above the last figures it could read.
  return html`<p class="crumbs"><a href="#/tasks">${t("stats.back")}</a></p>
    <div class="heading">
      <h1>${t("stats.title", { id })}</h1>
      <${Status} status=${task.status} mailing />
    </div>
    <p class="status-line" role="status" id="stats-message">${message}</p>
    <${FormError} error=${stats.error} />
    <section class="card" aria-labelledby="summary-title">
      <h2 id="summary-title" class="visually-hidden">${t("stats.summary")}</h2>
      <p class="task-text" id="task-text">${task.text}</p>
      <dl class="facts">
        <div><dt>${t("task.start")}</dt><dd>${formatTime(task.start_time)}</dd></div>
        <div><dt>${t("task.end")}</dt><dd>${formatTime(task.end_time)}</dd></div>
        <div><dt>${t("filter.title")}</dt><dd class="tag">${summaryOfFilter(task.filter)}</dd></div>
        <div><dt>${t("window.title")}</dt><dd>${sendWindow}</dd></div>
        <div><dt>${t("task.rate")}</dt><dd>${rate}</dd></div>
      </dl>
      <${TaskControls} task=${task}
        onChanged=${(changed) => {
          setMessage(t("tasks.changed", { id: changed.id, status: statusText(changed.status, { mailing: true }) }));
          setTick((n) => n + 1);
        }}
        onDeleted=${() => navigate("#/tasks")} />
    </section>
    <section class="card" aria-labelledby="progress-title">
      <h2 id="progress-title">${t("task.progress")}</h2>
      <${Progress} id="task-progress" total=${data.total} counts=${data.messages} status=${task.status} text=${task.text} />
      <table class="counts" id="counts">
        <caption class="visually-hidden">${t("stats.counts")}</caption>
        <tbody>
          <tr><th scope="row">${t("stats.total")}</th><td data-status="total">${formatNumber(data.total)}</td></tr>
          ${STATUSES.map((name) => html`<tr key=${name}><th scope="row"><${Status} status=${name} /></th>
            <td data-status=${name}>${formatNumber(data.messages[name])}</td></tr>`)}
        </tbody>
      </table>
      <${Timeline} id=${id} tick=${tick} />
    </section>
    <section class="card" aria-labelledby="messages-title">
      <h2 id="messages-title">${t("stats.messages")}</h2>
      <div class="field inline">
        <label for="message-status">${t("stats.byStatus")}</label>
        <select id="message-status" value=${status} onChange=${(e) => { setStatus(e.target.value); pager.reset(); }}>
          <option value="">${t("stats.all")}</option>
          ${STATUSES.map((name) => html`<option key=${name} value=${name}>${t(`status.${name}`)}</option>`)}
        </select>
      </div>
      <table class="list" id="messages-table">
        <caption class="visually-hidden">${t("stats.messages")}</caption>
        <thead><tr>
          <th scope="col">${t("message.id")}</th><th scope="col">${t("message.client")}</th>
          <th scope="col">${t("task.status")}</th><th scope="col">${t("message.created")}</th>
          <th scope="col">${t("message.sent")}</th><th scope="col">${t("message.attempts")}</th>
          <th scope="col">${t("message.error")}</th>
        </tr></thead>
        <tbody>
          ${data.items.length === 0 && html`<tr><td colspan="7" class="empty">${t("stats.noMessages")}</td></tr>`}
          ${data.items.map((m) => html`<tr key=${m.id}>
            <td>${m.id}</td><td>${m.client_id}</td><td><${Status} status=${m.status} /></td>
            <td>${formatTime(m.created_at)}</td><td>${formatTime(m.sent_at)}</td><td>${m.attempts}</td>
            <td>${m.last_error ?? "—"}</td>
          </tr>`)}
        </tbody>
      </table>
      <${Pager} pager=${pager} next=${data.next} label=${t("stats.pages")} />
    </section>
    <${Export} id=${id} />
    <${TestSend} id=${id} />`;
}
