// CSV import of clients (docs/SPEC.md, "Bulk import and export"; docs/imports.md): the
// file goes straight to the bucket through the pre-signed URL POST /api/imports/ answers
// (the page's Content-Security-Policy names that origin), then GET /api/imports/{id} is
// read every second until the import is done or failed.
import { useEffect, useRef, useState } from "./preact-htm.js";
import { ApiError, Field, FormError, api, formatNumber, html, t } from "./lib.js";

const POLL_MS = 1000;
const FINAL = ["done", "failed"];
// Shown in the page; the API keeps the first 100, the report has them all.
const ERRORS_SHOWN = 20;

// The PUT to the bucket: not the API, so its refusal (XML) is told by its status only.
async function upload(url, file) {
  let response;
  try {
    response = await fetch(url, { method: "PUT", body: file, cache: "no-store" });
  } catch {
    throw new ApiError(0, { error: "network", message: t("import.uploadUnreachable") });
  }
  if (!response.ok) {
    throw new ApiError(response.status, { error: "upload", message: t("import.uploadRefused", { status: response.status }) });
  }
}

function ImportProgress({ state }) {
  const counts = ["rows", "created", "updated", "rejected"]
    .map((name) => `${t(`import.${name}`)}: ${formatNumber(state[name] ?? 0)}`)
    .join(", ");
  return html`<p id="import-progress" data-status=${state.status}>
    ${t(`import.status.${state.status}`)} — ${counts}
  </p>`;
}

function ImportErrors({ state }) {
  const errors = state.errors || [];
  if (errors.length === 0) return null;
  return html`<table class="list compact" id="import-errors">
    <caption>${t("import.errorsCaption", { shown: formatNumber(Math.min(errors.length, ERRORS_SHOWN)), all: formatNumber(state.rejected) })}</caption>
    <thead><tr>
      <th scope="col">${t("import.line")}</th><th scope="col">${t("import.field")}</th>
      <th scope="col">${t("import.message")}</th>
    </tr></thead>
    <tbody>
      ${errors.slice(0, ERRORS_SHOWN).map((e, n) => html`<tr key=${n} data-line=${e.line}>
        <td>${e.line}</td><td><code>${e.field}</code></td><td>${e.message}</td>
      </tr>`)}
    </tbody>
  </table>`;
}

// `onDone` is told once an import ends (the client list reloads).
export function ImportClients({ onDone }) {
  const [file, setFile] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [state, setState] = useState(null);
  const timer = useRef(null);
  const done = useRef(onDone);
  done.current = onDone;
  useEffect(() => () => clearTimeout(timer.current), []);

  function follow(id) {
    api("GET", `/api/imports/${id}`).then(
      (answer) => {
        setState(answer);
        setError(null);
        if (FINAL.includes(answer.status)) {
          setBusy(false);
          done.current(answer);
        } else {
          timer.current = setTimeout(() => follow(id), POLL_MS);
        }
      },
      (problem) => {
        // A failed read (the network) is told and tried again: the import goes on.
        setError(problem);
        if (problem.status === 401 || problem.status === 404) setBusy(false);
        else timer.current = setTimeout(() => follow(id), POLL_MS * 3);
      },
    );
  }

  async function submit(event) {
    event.preventDefault();
    if (!file) {
      setError(new ApiError(400, { error: "validation_error", message: t("import.noFile"), fields: { file: t("field.required") } }));
      return;
    }
    clearTimeout(timer.current);
    setBusy(true);
    setError(null);
    setState(null);
    try {
      const created = await api("POST", "/api/imports/", { body: { format: "csv" } });
      setState({ id: created.id, status: "uploading" });
      await upload(created.upload_url, file);
      follow(created.id);
    } catch (problem) {
      setError(problem);
      setBusy(false);
    }
  }

  return html`<form class="card" id="import-form" onSubmit=${submit} noValidate aria-labelledby="import-title">
    <h2 id="import-title">${t("import.title")}</h2>
    <p class="hint" id="import-columns">${t("import.columns")}</p>
    <${FormError} error=${error} known=${["file"]} />
    <${Field} id="import-file" name="file" label=${t("import.file")} hint=${t("import.fileHint")} error=${error}
      input=${(a) => html`<input ...${a} type="file" accept=".csv,text/csv" disabled=${busy}
        onChange=${(e) => setFile(e.target.files[0] || null)} />`} />
    <div class="actions">
      <button type="submit" class="primary" disabled=${busy}>${t("import.start")}</button>
    </div>
    <div aria-live="polite" id="import-state">
      ${state && html`<${ImportProgress} state=${state} />`}
    </div>
    ${state && html`<${ImportErrors} state=${state} />`}
    ${state && state.error_report_url && html`<p><a id="import-report" href=${state.error_report_url}
      rel="noopener noreferrer" download>${t("import.report")}</a></p>`}
  </form>`;
}
