// Mailing tasks: the list with status and progress, the controls (pause, resume, cancel,
// delete), and the form that creates or edits one, with the filter builder and its live
// audience preview.
import { useEffect, useState } from "./preact-htm.js";
import {
  ApiError,
  ConfirmButton,
  Field,
  FormError,
  PAGE_SIZE,
  Pager,
  Progress,
  Status,
  api,
  formatTime,
  fromLocalInput,
  html,
  markReady,
  navigate,
  statusText,
  t,
  tn,
  toLocalInput,
  useDebounced,
  useInterval,
  useLoad,
  usePager,
  useTitle,
} from "./lib.js";

const CLOSED = ["finished", "cancelled"];
// Fields of a task a running one keeps open to change (docs/SPEC.md, update rules).
const RUNNING_FIELDS = ["end_time", "send_window", "rate_limit"];

// Pause, resume, cancel, delete: the buttons the task's status allows, and what they answer.
export function TaskControls({ task, onChanged, onDeleted }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  async function act(action) {
    setBusy(true);
    setError(null);
    try {
      if (action === "delete") {
        await api("DELETE", `/api/tasks/${task.id}`);
        onDeleted(task);
      } else {
        onChanged(await api("POST", `/api/tasks/${task.id}/${action}`));
      }
    } catch (problem) {
      setError(problem);
    } finally {
      setBusy(false);
    }
  }
  const label = (name) => t("tasks.actionOn", { action: t(`action.${name}`), id: task.id });
  const button = (name) => html`<button type="button" data-action=${name} disabled=${busy}
      aria-label=${label(name)} onClick=${() => act(name)}>${t(`action.${name}`)}</button>`;
  const open = !CLOSED.includes(task.status);
  return html`<div class="controls" data-task=${task.id}>
    ${open && html`<a class="button" href=${`#/tasks/${task.id}/edit`} aria-label=${label("edit")}>
      ${t("action.edit")}</a>`}
    ${["scheduled", "running"].includes(task.status) && button("pause")}
    ${task.status === "paused" && button("resume")}
    ${open && html`<${ConfirmButton} label=${t("action.cancelTask")} disabled=${busy}
      question=${t("tasks.cancelQuestion", { id: task.id })} onConfirm=${() => act("cancel")} />`}
    <${ConfirmButton} label=${t("action.delete")} disabled=${busy}
      question=${t("tasks.deleteQuestion", { id: task.id })} onConfirm=${() => act("delete")} />
    ${error && html`<p class="field-error" role="alert">${error.message}</p>`}
  </div>`;
}

export function Tasks() {
  useTitle(t("tasks.title"));
  const [message, setMessage] = useState("");
  // The tasks' list and their statistics' list are the same scan, page by page, so
  // each page of one has the other's tasks; a task missing from a stats page shows no bar.
  const pager = usePager({ tasks: null, stats: null });
  const list = useLoad(async () => {
    try {
      const query = { limit: PAGE_SIZE };
      const [tasks, stats] = await Promise.all([
        api("GET", "/api/tasks/", { query: { ...query, cursor: pager.cursor.tasks } }),
        api("GET", "/api/tasks/stats", { query: { ...query, cursor: pager.cursor.stats } }),
      ]);
      const counts = new Map(stats.items.map((item) => [item.id, item]));
      const items = tasks.items
        .map((task) => ({ task, stats: counts.get(task.id) }))
        .sort((a, b) => b.task.id - a.task.id);
      return { items, next: tasks.next ? { tasks: tasks.next, stats: stats.next } : null };
    } finally {
      markReady();
    }
  }, [pager.cursor]);
  const page = list.data;
  const running = Boolean(page && page.items.some(({ task }) => task.status === "running"));
  useInterval(list.reload, 2000, running);

  return html`<div class="heading">
      <h1>${t("tasks.title")}</h1>
      <a class="button primary" href="#/tasks/new" id="new-task">${t("tasks.new")}</a>
    </div>
    <p class="status-line" role="status" id="tasks-message">${message}</p>
    <${FormError} error=${list.error} />
    <table class="list" id="tasks-table">
      <caption>${t("tasks.caption")}</caption>
      <thead><tr>
        <th scope="col">${t("task.id")}</th><th scope="col">${t("task.text")}</th>
        <th scope="col">${t("task.status")}</th><th scope="col">${t("task.start")}</th>
        <th scope="col">${t("task.end")}</th><th scope="col">${t("task.progress")}</th>
        <th scope="col">${t("actions")}</th>
      </tr></thead>
      <tbody>
        ${page && page.items.length === 0 &&
        html`<tr><td colspan="7" class="empty">${t("tasks.none")}</td></tr>`}
        ${page && page.items.map(({ task, stats }) => html`<tr key=${task.id} data-task=${task.id}>
          <td><a href=${`#/tasks/${task.id}`} aria-label=${t("tasks.open", { id: task.id })}>#${task.id}</a></td>
          <td class="text">${task.text}</td>
          <td><${Status} status=${task.status} mailing /></td>
          <td>${formatTime(task.start_time)}</td><td>${formatTime(task.end_time)}</td>
          <td>${stats ? html`<${Progress} total=${stats.total} counts=${stats.messages} status=${task.status} text=${task.text} />` : "—"}</td>
          <td><${TaskControls} task=${task} onChanged=${(changed) => {
            setMessage(t("tasks.changed", { id: changed.id, status: statusText(changed.status, { mailing: true }) }));
            list.reload();
          }} onDeleted=${(gone) => {
            setMessage(t("tasks.deleted", { id: gone.id }));
            list.reload();
          }} /></td>
        </tr>`)}
      </tbody>
    </table>
    ${page && html`<${Pager} pager=${pager} next=${page.next} label=${t("tasks.pages")} />`}`;
}

// A list of codes or tags: type one, press Add (or Enter); each shows with its Remove.
// What is typed and not yet added is the form's (`typed`), so that saving refuses it
// rather than drop it: a dropped tag would leave no filter, and everyone would get it.
function ValuesInput({ id, name, label, hint, values, onChange, typed, onType, error, disabled }) {
  const setTyped = onType;
  const add = () => {
    const value = typed.trim();
    if (value && !values.includes(value)) onChange([...values, value]);
    setTyped("");
  };
  const keydown = (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      add();
    }
  };
  return html`<div class="values">
    <${Field} id=${id} name=${name} label=${label} hint=${hint} error=${error}
      input=${(attrs) => html`<span class="with-button">
        <input ...${attrs} value=${typed} disabled=${disabled}
          onInput=${(e) => setTyped(e.target.value)} onKeyDown=${keydown} />
        <button type="button" id=${`${id}-add`} onClick=${add} disabled=${disabled}>${t("action.add")}</button>
      </span>`} />
    <ul class="chips" aria-label=${label}>
      ${values.map((value) => html`<li key=${value}><span class="chip-text">${value}</span>
        <button type="button" class="chip-remove" disabled=${disabled}
          aria-label=${t("filter.remove", { value })}
          onClick=${() => onChange(values.filter((v) => v !== value))}>×</button></li>`)}
    </ul>
  </div>`;
}

// How many clients a filter reaches now, and a few of them (POST /api/audience/preview),
// asked again 300 ms after the filter stops changing.
function AudiencePreview({ filter }) {
  const settled = useDebounced(JSON.stringify(filter), 300);
  const preview = useLoad(() => api("POST", "/api/audience/preview", { body: { filter: JSON.parse(settled) } }), [settled]);
  const data = preview.data;
  return html`<section class="preview card" aria-labelledby="preview-title">
    <h3 id="preview-title">${t("preview.title")}</h3>
    <div aria-live="polite">
      ${preview.error
        ? html`<p class="field-error">${preview.error.message}</p>`
        : data && html`<p id="preview-count" data-count=${data.count}>${tn("preview.count", data.count)}</p>`}
    </div>
    ${data && data.sample.length > 0 && html`<table class="list compact" id="preview-sample">
      <caption>${t("preview.sample")}</caption>
      <thead><tr><th scope="col">${t("client.phone")}</th><th scope="col">${t("client.code")}</th>
        <th scope="col">${t("client.tag")}</th></tr></thead>
      <tbody>${data.sample.map((c) => html`<tr key=${c.id}><td>${c.phone}</td><td>${c.code}</td>
        <td class="tag">${c.tag}</td></tr>`)}</tbody>
    </table>`}
  </section>`;
}

function formValues(task) {
  const now = new Date();
  now.setSeconds(0, 0);
  const tomorrow = new Date(now.getTime() + 24 * 3600 * 1000);
  return {
    text: task ? task.text : "",
    start: toLocalInput(task ? task.start_time : now.toISOString()),
    end: toLocalInput(task ? task.end_time : tomorrow.toISOString()),
    codes: task ? [...task.filter.codes] : [],
    tags: task ? [...task.filter.tags] : [],
    window: Boolean(task && task.send_window),
    from: task && task.send_window ? task.send_window.from : "09:00",
    to: task && task.send_window ? task.send_window.to : "21:00",
    rate: task && task.rate_limit ? String(task.rate_limit) : "",
  };
}

// The body the API takes; an edit sends only what changed (a running task refuses any
// change but the end, window and rate).
function requestBody(values, task) {
  const rate = values.rate.trim();
  const full = {
    text: values.text,
    start_time: fromLocalInput(values.start),
    end_time: fromLocalInput(values.end),
    filter: { codes: values.codes, tags: values.tags },
    send_window: values.window ? { from: values.from, to: values.to } : null,
    rate_limit: rate === "" ? null : /^[0-9]+$/.test(rate) ? Number(rate) : rate,
  };
  if (!task) {
    if (full.send_window === null) delete full.send_window;
    if (full.rate_limit === null) delete full.rate_limit;
    return full;
  }
  const before = formValues(task);
  const changed = {};
  if (values.text !== before.text) changed.text = full.text;
  if (values.start !== before.start) changed.start_time = full.start_time;
  if (values.end !== before.end) changed.end_time = full.end_time;
  if (JSON.stringify(full.filter) !== JSON.stringify(task.filter)) changed.filter = full.filter;
  if (JSON.stringify(full.send_window) !== JSON.stringify(task.send_window ?? null)) {
    changed.send_window = full.send_window;
  }
  if (full.rate_limit !== (task.rate_limit ?? null)) changed.rate_limit = full.rate_limit;
  return changed;
}

export function TaskForm({ id }) {
  const editing = id !== undefined;
  useTitle(editing ? t("taskForm.editTitle", { id }) : t("taskForm.newTitle"));
  const loaded = useLoad(async () => {
    try {
      return editing ? await api("GET", `/api/tasks/${id}`) : null;
    } finally {
      markReady();
    }
  }, [id]);
  const task = loaded.data;
  const [values, setValues] = useState(null);
  const [typed, setTyped] = useState({ codes: "", tags: "" });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    if (!loaded.loading && (task || !editing)) setValues(formValues(task));
  }, [loaded.loading]);

  if (loaded.error) return html`<h1>${t("taskForm.editTitle", { id })}</h1><${FormError} error=${loaded.error} />`;
  if (!values) return html`<h1>${editing ? t("taskForm.editTitle", { id }) : t("taskForm.newTitle")}</h1>
    <p>${t("loading")}</p>`;

  const running = Boolean(task && task.status === "running");
  const locked = (name) => running && !RUNNING_FIELDS.includes(name);
  const set = (name) => (e) => setValues({ ...values, [name]: e.target.type === "checkbox" ? e.target.checked : e.target.value });

  // A code or tag typed and not added: refused next to its input, nothing sent.
  function notAdded() {
    const fields = {};
    for (const [part, field] of [["codes", "filter.codes"], ["tags", "filter.tags"]]) {
      const value = typed[part].trim();
      if (value) fields[field] = t("filter.notAdded", { value });
    }
    return Object.keys(fields).length ? new ApiError(400, { error: "validation_error", message: t("filter.notAddedMessage"), fields }) : null;
  }

  async function submit(event) {
    event.preventDefault();
    const pending = notAdded();
    if (pending) {
      setError(pending);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const body = requestBody(values, task);
      const saved = editing
        ? Object.keys(body).length ? await api("PATCH", `/api/tasks/${id}`, { body }) : task
        : await api("POST", "/api/tasks/", { body });
      navigate(`#/tasks/${saved.id}`);
    } catch (problem) {
      setError(problem);
      setBusy(false);
    }
  }

  // The fields an input shows; any other (a "filter" refused as a whole) goes on top.
  const known = ["text", "start_time", "end_time", "filter.codes", "filter.tags", "send_window", "rate_limit"];
  return html`<h1>${editing ? t("taskForm.editTitle", { id }) : t("taskForm.newTitle")}</h1>
    ${running && html`<p class="notice">${t("taskForm.runningNote")}</p>`}
    <form id="task-form" class="task-form" onSubmit=${submit} noValidate>
      <${FormError} error=${error} known=${known} />
      <div class="columns">
        <div>
          <${Field} id="task-text" name="text" label=${t("task.text")} hint=${t("taskForm.textHint")} error=${error}
            input=${(a) => html`<textarea ...${a} rows="4" maxlength="4096" disabled=${locked("text")}
              value=${values.text} onInput=${set("text")}></textarea>`} />
          <div class="row">
            <${Field} id="task-start" name="start_time" label=${t("task.start")} error=${error}
              input=${(a) => html`<input ...${a} type="datetime-local" disabled=${locked("start_time")}
                value=${values.start} onInput=${set("start")} />`} />
            <${Field} id="task-end" name="end_time" label=${t("task.end")} error=${error}
              input=${(a) => html`<input ...${a} type="datetime-local" value=${values.end} onInput=${set("end")} />`} />
          </div>
          <fieldset class="filter">
            <legend>${t("filter.title")}</legend>
            <p class="hint">${t("filter.hint")}</p>
            <${ValuesInput} id="filter-codes" name="filter.codes" label=${t("filter.codes")}
              values=${values.codes} error=${error} disabled=${locked("filter")}
              typed=${typed.codes} onType=${(codes) => setTyped({ ...typed, codes })}
              onChange=${(codes) => setValues({ ...values, codes })} />
            <${ValuesInput} id="filter-tags" name="filter.tags" label=${t("filter.tags")}
              values=${values.tags} error=${error} disabled=${locked("filter")}
              typed=${typed.tags} onType=${(tags) => setTyped({ ...typed, tags })}
              onChange=${(tags) => setValues({ ...values, tags })} />
          </fieldset>
          <fieldset class="window">
            <legend>${t("window.title")}</legend>
            <div class="check">
              <input type="checkbox" id="window-on" checked=${values.window} onChange=${set("window")} />
              <label for="window-on">${t("window.on")}</label>
            </div>
            ${values.window && html`<div class="row">
              <${Field} id="window-from" name="send_window" label=${t("window.from")} error=${error}
                input=${(a) => html`<input ...${a} type="time" value=${values.from} onInput=${set("from")} />`} />
              <${Field} id="window-to" name="send_window.to" label=${t("window.to")}
                input=${(a) => html`<input ...${a} type="time" value=${values.to} onInput=${set("to")} />`} />
            </div>`}
            <p class="hint">${t("window.hint")}</p>
          </fieldset>
          <${Field} id="task-rate" name="rate_limit" label=${t("task.rate")} hint=${t("taskForm.rateHint")} error=${error}
            input=${(a) => html`<input ...${a} inputmode="numeric" value=${values.rate} onInput=${set("rate")} />`} />
        </div>
        ${!locked("filter") && html`<${AudiencePreview} filter=${{ codes: values.codes, tags: values.tags }} />`}
      </div>
      <div class="actions">
        <button type="submit" class="primary" id="task-submit" disabled=${busy}>
          ${editing ? t("action.save") : t("taskForm.create")}
        </button>
        <a class="button" href=${editing ? `#/tasks/${id}` : "#/tasks"}>${t("action.cancel")}</a>
      </div>
    </form>`;
}

export const summaryOfFilter = (filter) => {
  const parts = [];
  if (filter.codes.length) parts.push(t("filter.codesAre", { list: filter.codes.join(", ") }));
  if (filter.tags.length) parts.push(t("filter.tagsAre", { list: filter.tags.join(", ") }));
  return parts.length ? parts.join("; ") : t("filter.everyone");
};
