// The console's shell: sign-in and sign-out, the header (navigation, language, time zone)
// and the router. Screens are chosen by the location's hash (#/tasks, #/tasks/5,
// #/clients, #/stoplist), so a reload keeps the screen.
import { render, useEffect, useRef, useState } from "./preact-htm.js";
import {
  ApiError,
  Field,
  FormError,
  LANGUAGES,
  TIME_ZONE,
  api,
  html,
  language,
  markReady,
  onUnauthorized,
  session,
  setLanguage,
  t,
  useTitle,
} from "./lib.js";
import { Clients } from "./clients.js";
import { TaskForm, Tasks } from "./tasks.js";
import { TaskStats } from "./stats.js";
import { StopList } from "./stoplist.js";

function parseRoute(hash) {
  const [screen, id, action] = hash.replace(/^#\/?/, "").split("/");
  if (screen === "clients" || screen === "stoplist") return { screen };
  if (screen === "tasks" && id === "new") return { screen: "task-form" };
  if (screen === "tasks" && /^[0-9]{1,18}$/.test(id || "")) {
    return { screen: action === "edit" ? "task-form" : "stats", id: Number(id) };
  }
  return { screen: "tasks" };
}

function useRoute() {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const follow = () => setRoute(parseRoute(location.hash));
    window.addEventListener("hashchange", follow);
    return () => window.removeEventListener("hashchange", follow);
  }, []);
  return route;
}

function LanguageSwitch({ onChange }) {
  return html`<div class="language">
    <label for="language">${t("language.label")}</label>
    <select id="language" value=${language()} onChange=${(e) => onChange(e.target.value)}>
      ${Object.entries(LANGUAGES).map(
        ([code, name]) => html`<option key=${code} value=${code} lang=${code}>${name}</option>`,
      )}
    </select>
  </div>`;
}

function Header({ route, onLanguage, onSignOut }) {
  const current = (names) => (names.includes(route.screen) ? "page" : undefined);
  return html`<header class="top">
    <p class="brand">${t("app.title")}</p>
    ${onSignOut &&
    html`<nav aria-label=${t("nav.label")}>
      <ul>
        <li><a href="#/tasks" aria-current=${current(["tasks", "task-form", "stats"])}>${t("nav.tasks")}</a></li>
        <li><a href="#/clients" aria-current=${current(["clients"])}>${t("nav.clients")}</a></li>
        <li><a href="#/stoplist" aria-current=${current(["stoplist"])}>${t("nav.stoplist")}</a></li>
      </ul>
    </nav>`}
    <div class="tools">
      <${LanguageSwitch} onChange=${onLanguage} />
      <p class="zone" id="time-zone">${t("zone", { zone: TIME_ZONE })}</p>
      ${onSignOut && html`<button type="button" id="sign-out" onClick=${onSignOut}>${t("signout")}</button>`}
    </div>
  </header>`;
}

// `make run` and local.keys exist where the page is served by the local stack only; a
// deployed console's operator gets a key from whoever runs the service.
const SERVED_LOCALLY = ["127.0.0.1", "localhost", "[::1]", "::1"].includes(location.hostname);

function SignIn({ notice, onSignedIn }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  useTitle(t("signin.title"));
  useEffect(markReady, []);

  async function submit(event) {
    event.preventDefault();
    const typed = key.trim();
    if (!typed) {
      setError(new ApiError(400, { message: t("signin.missing"), fields: { key: t("field.required") } }));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      // A cheap call that needs the key: the key is good when it is answered.
      await api("GET", "/api/tasks/", { query: { limit: 1 }, key: typed });
      session.signIn(typed);
      onSignedIn();
    } catch (problem) {
      setError(
        problem.status === 401
          ? new ApiError(401, { message: t("signin.refused"), fields: { key: t("signin.refusedField") } })
          : problem,
      );
    } finally {
      setBusy(false);
    }
  }

  return html`<main id="main" class="signin">
    <h1>${t("signin.title")}</h1>
    ${notice && html`<p class="notice" role="status" id="signin-notice">${notice}</p>`}
    <form id="signin-form" onSubmit=${submit} noValidate>
      <${FormError} error=${error} known=${["key"]} />
      <${Field}
        id="api-key"
        name="key"
        label=${t("signin.key")}
        hint=${t(SERVED_LOCALLY ? "signin.hint" : "signin.hintDeployed")}
        error=${error}
        input=${(attrs) => html`<input ...${attrs} type="password" autocomplete="off"
          value=${key} onInput=${(e) => setKey(e.target.value)} />`}
      />
      <button type="submit" class="primary" disabled=${busy}>${t("signin.submit")}</button>
    </form>
  </main>`;
}

function Screen({ route }) {
  switch (route.screen) {
    case "clients":
      return html`<${Clients} />`;
    case "stoplist":
      return html`<${StopList} />`;
    case "task-form":
      return html`<${TaskForm} id=${route.id} />`;
    case "stats":
      return html`<${TaskStats} id=${route.id} />`;
    default:
      return html`<${Tasks} />`;
  }
}

function App() {
  const [signedIn, setSignedIn] = useState(() => Boolean(session.key()));
  const [notice, setNotice] = useState("");
  const [, setShownLanguage] = useState(language());
  const route = useRoute();
  // A new screen takes the focus (its main region), as a page load would: else it stays
  // on a link or button that is gone, and a screen reader hears nothing of the change.
  const firstScreen = useRef(true);
  useEffect(() => {
    if (firstScreen.current) {
      firstScreen.current = false;
      return;
    }
    const main = document.getElementById("main");
    if (main) main.focus();
  }, [route.screen, route.id]);

  useEffect(() => {
    document.documentElement.lang = language();
    onUnauthorized(() => {
      setNotice(t("signin.expired"));
      setSignedIn(false);
    });
  }, []);

  const changeLanguage = (code) => {
    setLanguage(code);
    setShownLanguage(code);
  };
  const signOut = () => {
    session.signOut();
    setNotice(t("signin.signedOut"));
    setSignedIn(false);
  };

  if (!signedIn) {
    return html`<${Header} route=${route} onLanguage=${changeLanguage} />
      <${SignIn} notice=${notice} onSignedIn=${() => { setNotice(""); setSignedIn(true); }} />`;
  }
  // A new key per screen and task: each screen starts with its own state.
  return html`<${Header} route=${route} onLanguage=${changeLanguage} onSignOut=${signOut} />
    <main id="main" tabindex="-1" data-screen=${route.screen}>
      <${Screen} key=${`${route.screen}:${route.id ?? ""}`} route=${route} />
    </main>`;
}

render(html`<${App} />`, document.getElementById("app"));
