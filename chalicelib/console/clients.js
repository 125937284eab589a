// The client directory: search by code and tag, pages, add, edit and delete, and CSV
// import (imports.js).
import { useEffect, useState } from "./preact-htm.js";
import {
  ConfirmButton,
  Field,
  FormError,
  PAGE_SIZE,
  Pager,
  TIME_ZONE,
  api,
  html,
  markReady,
  t,
  useLoad,
  usePager,
  useTitle,
} from "./lib.js";
import { ImportClients } from "./imports.js";

const CLIENT_FIELDS = ["phone", "code", "tag", "utc"];
const blank = () => ({ phone: "", code: "", tag: "", utc: TIME_ZONE });

function ClientForm({ client, onSaved, onCancel }) {
  const [values, setValues] = useState(() => (client ? { ...client } : blank()));
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const prefix = client ? "edit-client" : "new-client";
  const set = (name) => (e) => setValues({ ...values, [name]: e.target.value });
  // Edit opens the form below the list: take the operator there.
  useEffect(() => {
    if (client) document.getElementById(`${prefix}-phone`)?.focus();
  }, []);

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      let saved;
      if (client) {
        // Only what changed: a partial update (PATCH).
        const changes = {};
        for (const name of CLIENT_FIELDS) if (values[name] !== client[name]) changes[name] = values[name];
        saved = Object.keys(changes).length
          ? await api("PATCH", `/api/clients/${client.id}`, { body: changes })
          : client;
      } else {
        saved = await api("POST", "/api/clients/", { body: values });
        setValues(blank());
      }
      onSaved(saved);
    } catch (problem) {
      setError(problem);
    } finally {
      setBusy(false);
    }
  }

  const input = (name, extra = {}) => (attrs) =>
    html`<input ...${attrs} ...${extra} value=${values[name]} onInput=${set(name)} />`;
  return html`<form class="card" id=${`${prefix}-form`} onSubmit=${submit} noValidate
      aria-labelledby=${`${prefix}-title`}>
    <h2 id=${`${prefix}-title`}>
      ${client ? t("clients.editTitle", { id: client.id }) : t("clients.addTitle")}
    </h2>
    <${FormError} error=${error} known=${CLIENT_FIELDS} />
    <div class="row">
      <${Field} id=${`${prefix}-phone`} name="phone" label=${t("client.phone")}
        hint=${t("client.phoneHint")} error=${error}
        input=${input("phone", { inputmode: "numeric", autocomplete: "off" })} />
      <${Field} id=${`${prefix}-code`} name="code" label=${t("client.code")} error=${error}
        input=${input("code")} />
      <${Field} id=${`${prefix}-tag`} name="tag" label=${t("client.tag")} error=${error}
        input=${input("tag")} />
      <${Field} id=${`${prefix}-utc`} name="utc" label=${t("client.utc")}
        hint=${t("client.utcHint")} error=${error} input=${input("utc")} />
    </div>
    <div class="actions">
      <button type="submit" class="primary" disabled=${busy}>
        ${client ? t("action.save") : t("clients.add")}
      </button>
      ${onCancel && html`<button type="button" onClick=${onCancel}>${t("action.cancel")}</button>`}
    </div>
  </form>`;
}

export function Clients() {
  useTitle(t("clients.title"));
  const [draft, setDraft] = useState({ code: "", tag: "" });
  const [search, setSearch] = useState({ code: "", tag: "" });
  const [editing, setEditing] = useState(null);
  const [message, setMessage] = useState("");
  const [actionError, setActionError] = useState(null);
  const pager = usePager();
  const list = useLoad(async () => {
    try {
      return await api("GET", "/api/clients/", {
        query: { limit: PAGE_SIZE, cursor: pager.cursor, code: search.code, tag: search.tag },
      });
    } finally {
      markReady();
    }
  }, [search, pager.cursor]);

  const find = (event) => {
    event.preventDefault();
    setSearch({ code: draft.code.trim(), tag: draft.tag });
    pager.reset();
  };
  const saved = (client, verb) => {
    setMessage(t(verb, { id: client.id }));
    setEditing(null);
    list.reload();
  };
  async function remove(client) {
    setActionError(null);
    try {
      await api("DELETE", `/api/clients/${client.id}`);
      setMessage(t("clients.deleted", { id: client.id }));
      list.reload();
    } catch (problem) {
      setActionError(problem);
    }
  }

  const page = list.data;
  return html`<h1>${t("clients.title")}</h1>
    <p class="status-line" role="status" id="clients-message">${message}</p>
    <form class="card search" id="client-search" onSubmit=${find} noValidate role="search"
        aria-label=${t("clients.search")}>
      <${FormError} error=${list.error} known=${["code", "tag"]} />
      <div class="row">
        <${Field} id="search-code" name="code" label=${t("client.code")} error=${list.error}
          input=${(a) => html`<input ...${a} value=${draft.code}
            onInput=${(e) => setDraft({ ...draft, code: e.target.value })} />`} />
        <${Field} id="search-tag" name="tag" label=${t("client.tag")} error=${list.error}
          input=${(a) => html`<input ...${a} value=${draft.tag}
            onInput=${(e) => setDraft({ ...draft, tag: e.target.value })} />`} />
        <div class="field submit"><button type="submit">${t("clients.find")}</button></div>
      </div>
    </form>
    <${FormError} error=${actionError} />
    <table class="list" id="clients-table">
      <caption>${t("clients.caption")}</caption>
      <thead><tr>
        <th scope="col">${t("client.id")}</th><th scope="col">${t("client.phone")}</th>
        <th scope="col">${t("client.code")}</th><th scope="col">${t("client.tag")}</th>
        <th scope="col">${t("client.utc")}</th><th scope="col">${t("actions")}</th>
      </tr></thead>
      <tbody>
        ${page && page.items.length === 0 &&
        html`<tr><td colspan="6" class="empty">${t("clients.none")}</td></tr>`}
        ${page && page.items.map((client) => html`<tr key=${client.id} data-client=${client.id}>
          <td>${client.id}</td><td>${client.phone}</td><td>${client.code}</td>
          <td class="tag">${client.tag}</td><td>${client.utc}</td>
          <td class="actions">
            <button type="button" onClick=${() => setEditing(client)}
              aria-label=${t("clients.editOne", { id: client.id })}>${t("action.edit")}</button>
            <${ConfirmButton} label=${t("action.delete")}
              question=${t("clients.deleteQuestion", { id: client.id })}
              onConfirm=${() => remove(client)} />
          </td>
        </tr>`)}
      </tbody>
    </table>
    ${page && html`<${Pager} pager=${pager} next=${page.next} label=${t("clients.pages")} />`}
    ${editing
      ? html`<${ClientForm} key=${editing.id} client=${editing}
          onSaved=${(c) => saved(c, "clients.saved")} onCancel=${() => setEditing(null)} />`
      : html`<${ClientForm} onSaved=${(c) => saved(c, "clients.created")} />`}
    <${ImportClients} onDone=${list.reload} />`;
}
