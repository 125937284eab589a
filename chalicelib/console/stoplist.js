// The stop list: phones no message may go to, paged; add and remove.
import { useState } from "./preact-htm.js";
import {
  ConfirmButton,
  Field,
  FormError,
  PAGE_SIZE,
  Pager,
  api,
  formatTime,
  html,
  markReady,
  t,
  useLoad,
  usePager,
  useTitle,
} from "./lib.js";

export function StopList() {
  useTitle(t("stoplist.title"));
  const [values, setValues] = useState({ phone: "", reason: "" });
  const [error, setError] = useState(null);
  const [message, setMessage] = useState("");
  const pager = usePager();
  const list = useLoad(async () => {
    try {
      return await api("GET", "/api/stoplist/", { query: { limit: PAGE_SIZE, cursor: pager.cursor } });
    } finally {
      markReady();
    }
  }, [pager.cursor]);

  async function add(event) {
    event.preventDefault();
    setError(null);
    const body = { phone: values.phone.trim() };
    if (values.reason.trim()) body.reason = values.reason.trim();
    try {
      const entry = await api("POST", "/api/stoplist/", { body });
      setValues({ phone: "", reason: "" });
      setMessage(t("stoplist.added", { phone: entry.phone }));
      list.reload();
    } catch (problem) {
      setError(problem);
    }
  }
  async function remove(phone) {
    setError(null);
    try {
      await api("DELETE", `/api/stoplist/${encodeURIComponent(phone)}`);
      setMessage(t("stoplist.removed", { phone }));
      list.reload();
    } catch (problem) {
      setError(problem);
    }
  }

  const page = list.data;
  return html`<h1>${t("stoplist.title")}</h1>
    <p class="lead">${t("stoplist.lead")}</p>
    <p class="status-line" role="status" id="stoplist-message">${message}</p>
    <${FormError} error=${list.error} />
    <table class="list" id="stoplist-table">
      <caption>${t("stoplist.caption")}</caption>
      <thead><tr>
        <th scope="col">${t("client.phone")}</th><th scope="col">${t("stoplist.reason")}</th>
        <th scope="col">${t("stoplist.since")}</th><th scope="col">${t("actions")}</th>
      </tr></thead>
      <tbody>
        ${page && page.items.length === 0 &&
        html`<tr><td colspan="4" class="empty">${t("stoplist.none")}</td></tr>`}
        ${page && page.items.map((entry) => html`<tr key=${entry.phone}>
          <td>${entry.phone}</td><td>${entry.reason ?? "—"}</td><td>${formatTime(entry.created_at)}</td>
          <td class="actions"><${ConfirmButton} label=${t("stoplist.remove")}
            question=${t("stoplist.removeQuestion", { phone: entry.phone })}
            onConfirm=${() => remove(entry.phone)} /></td>
        </tr>`)}
      </tbody>
    </table>
    ${page && html`<${Pager} pager=${pager} next=${page.next} label=${t("stoplist.pages")} />`}
    <form class="card" id="stop-form" onSubmit=${add} noValidate aria-labelledby="stop-form-title">
      <h2 id="stop-form-title">${t("stoplist.addTitle")}</h2>
      <${FormError} error=${error} known=${["phone", "reason"]} />
      <div class="row">
        <${Field} id="stop-phone" name="phone" label=${t("client.phone")} hint=${t("client.phoneHint")}
          error=${error} input=${(a) => html`<input ...${a} inputmode="numeric" value=${values.phone}
            onInput=${(e) => setValues({ ...values, phone: e.target.value })} />`} />
        <${Field} id="stop-reason" name="reason" label=${t("stoplist.reasonOptional")} error=${error}
          input=${(a) => html`<input ...${a} value=${values.reason} maxlength="500"
            onInput=${(e) => setValues({ ...values, reason: e.target.value })} />`} />
      </div>
      <div class="actions"><button type="submit" class="primary">${t("stoplist.add")}</button></div>
    </form>`;
}
