// Shared by the rider's, the partner's and the operator's page: words, the token, calls to the APIs, messages.
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("config").textContent);
  const words = config.words;
  const KEY = "warmbee." + config.role + ".token";

  function t(key, vars) {
    let text = words[key] || key;
    for (const [name, value] of Object.entries(vars || {})) text = text.split("{" + name + "}").join(String(value));
    return text;
  }

  // A sentence with a number: its form by the page's language's plural rules (CLDR; Chinese has one form,
  // English "one" for 1), from the words `key_one` and `key_other` the server made of the msgid's plural.
  const plurals = new Intl.PluralRules(config.tag);
  function tn(key, n, vars) {
    return t(key + (plurals.select(n) === "one" ? "_one" : "_other"), vars);
  }

  // A token in the fragment (#token=...) never reaches a server; keep it for this tab and clear the address bar.
  // The operator's console takes a pasted token only: an operator's token is never put in an address.
  function tokenFromFragment() {
    if (config.role === "operator") return;
    const params = new URLSearchParams(location.hash.slice(1));
    const token = params.get("token");
    if (token) {
      sessionStorage.setItem(KEY, token.trim());
      history.replaceState(null, "", location.pathname + location.search);
    }
  }

  // The operator console signs in at the programme's OpenID provider (config.oidc): authorization code with
  // PKCE (RFC 7636), a public client. The code comes back in the fragment (response_mode=fragment), so it
  // never reaches a server or its logs, and is taken out of the address bar at once; the verifier and state
  // wait in this tab's storage only for the round trip; the access token is kept as a pasted one is.
  const PENDING = "warmbee." + config.role + ".signin";

  function b64url(bytes) {
    return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function redirectUri() {
    return location.origin + location.pathname;
  }

  async function discovery() {
    const response = await fetch(config.oidc.issuer + "/.well-known/openid-configuration");
    if (!response.ok) throw new Error("discovery " + response.status);
    return response.json();
  }

  async function startProviderSignIn() {
    const meta = await discovery();
    const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
    sessionStorage.setItem(PENDING, JSON.stringify(
      { verifier, state, token_endpoint: meta.token_endpoint, search: location.search }));
    const query = new URLSearchParams({
      response_type: "code", response_mode: "fragment", client_id: config.oidc.client_id,
      redirect_uri: redirectUri(), scope: "openid", state, resource: config.oidc.audience,
      code_challenge: b64url(new Uint8Array(digest)), code_challenge_method: "S256",
    });
    location.assign(meta.authorization_endpoint + "?" + query);
  }

  // Back from the provider: exchange the code for the access token. Returns what went wrong, or "".
  async function finishProviderSignIn() {
    const answer = new URLSearchParams(location.hash.slice(1));
    if (!(answer.has("code") || answer.has("error"))) return "";
    const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
    sessionStorage.removeItem(PENDING);
    history.replaceState(null, "", location.pathname + (pending ? pending.search : location.search));
    if (answer.has("error")) {
      return t("op_provider_failed", { error: answer.get("error_description") || answer.get("error") });
    }
    if (!pending || answer.get("state") !== pending.state) return t("op_provider_stale");
    const response = await fetch(pending.token_endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code", code: answer.get("code"), redirect_uri: redirectUri(),
        client_id: config.oidc.client_id, code_verifier: pending.verifier, resource: config.oidc.audience,
      }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok || !body.access_token) {
      return t("op_provider_failed", { error: body.error_description || body.error || response.status });
    }
    sessionStorage.setItem(KEY, body.access_token);
    return "";
  }

  // The warmbee role a token's claims give: the configured claim (a dotted path), a string or a list of one.
  function roleOf(who) {
    const path = (config.oidc && config.oidc.role_claim) || "role";
    let value = who;
    for (const part of path.split(".")) value = value && typeof value === "object" ? value[part] : undefined;
    if (Array.isArray(value)) value = value.length === 1 ? value[0] : undefined;
    return typeof value === "string" ? value : undefined;
  }

  function claims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(decodeURIComponent(escape(atob(part))));
    } catch (e) {
      return null;
    }
  }

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function say(text) {
    $("status").textContent = text || "";
  }

  function fail(text) {
    const box = $("error");
    box.textContent = text || "";
    box.hidden = !text;
  }

  // The problem's slug: the last part of its type URL (https://warmbee.dev/problems/code-unknown).
  function slugOf(body) {
    return body && typeof body.type === "string" ? body.type.split("/").pop() : "";
  }

  // Plain words for a refused call: the page's own for the problems it knows, the API's detail otherwise.
  function explain(result) {
    if (result.status === 0) return t("network_error");
    if (result.status === 401) return t("unauthenticated");
    const slug = slugOf(result.body);
    if (words["err_" + slug]) return t("err_" + slug, { n: (result.body && result.body.retry_after_s) || "" });
    if (result.status === 403) return t("forbidden");
    return (result.body && result.body.detail) || t("unexpected");
  }

  // One request to an API with the tab's token, in the page's language (reasons, problems' titles and
  // details come back zh-CN or en): the response, or null when the network failed.
  async function request(service, path, options) {
    const token = sessionStorage.getItem(KEY);
    const headers = Object.assign({ Accept: "application/json", "Accept-Language": config.tag }, options.headers || {});
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method: options.method || "GET", headers: headers };
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.json);
    }
    if (options.text !== undefined) {
      headers["Content-Type"] = options.contentType;
      init.body = options.text;
    }
    try {
      return await fetch(config.api[service] + path, init);
    } catch (e) {
      return null;
    }
  }

  // What a JSON answer (or a problem) says; a 401 signs the tab out.
  async function answer(response) {
    if (!response) return { ok: false, status: 0, body: null };
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (response.status === 401) signOut(t("unauthenticated"));
    return { ok: response.ok, status: response.status, body: body };
  }

  async function call(service, path, options) {
    return answer(await request(service, path, options || {}));
  }

  // A file the API makes (CSV, Excel) saved under the name it gives: fetched with the token in a header,
  // handed to the browser as a blob: URL, so the token is never in an address.
  async function download(service, path, accept, fallbackName) {
    const response = await request(service, path, { headers: { Accept: accept } });
    if (!response || !response.ok) return answer(response);
    const named = /filename="?([^";]+)"?/.exec(response.headers.get("Content-Disposition") || "");
    const link = el("a", { href: URL.createObjectURL(await response.blob()), download: named ? named[1] : fallbackName });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    return { ok: true, status: response.status, body: null, name: link.download };
  }

  // Dates in the page's language, by the browser's Intl (CLDR, as Babel on the server), in the programme's
  // time zone: 2026年10月14日 14:30 on the Chinese page, October 14, 2026 at 14:30 on the English one.
  const when = new Intl.DateTimeFormat(config.tag, {
    timeZone: "Asia/Shanghai", year: "numeric", month: "long", day: "numeric",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });
  function at(iso) { return iso ? when.format(new Date(iso)) : ""; }
  // "2026-10" -> 2026年10月 / October 2026.
  const monthName = new Intl.DateTimeFormat(config.tag, { timeZone: "UTC", year: "numeric", month: "long" });
  function month(ym) {
    const m = /^(\d{4})-(\d{2})$/.exec(ym || "");
    return m ? monthName.format(new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, 1))) : ym || "";
  }

  // A day (2027-12-31, the API's dates) as the page writes dates: 2027年12月31日 / December 31, 2027.
  const dayName = new Intl.DateTimeFormat(config.tag, { timeZone: "UTC", year: "numeric", month: "long", day: "numeric" });
  function day(ymd) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(ymd || "");
    return m ? dayName.format(new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])))) : ymd || "";
  }

  // The balance's `lapsing` (soonest first, as the API gives it) as one line each under the balance, on the
  // rider's page and in the console alike; the list is hidden when nothing lapses.
  function showLapsing(list, lapsing) {
    list.replaceChildren(...(lapsing || []).map((x) => el("li", { "data-testid": "lapsing-line", "data-on": x.on,
      text: tn("lapsing", x.points, { points: x.points, on: day(x.on) }) })));
    list.hidden = !list.children.length;
  }

  function statusBadge(status) {
    return el("span", { class: "badge badge-" + status, text: t("status_" + status) });
  }

  let started = null;
  function signOut(message) {
    sessionStorage.removeItem(KEY);
    $("app").hidden = true;
    $("who").hidden = true;
    $("signin").hidden = false;
    fail(message || "");
  }

  function signIn(start) {
    const token = sessionStorage.getItem(KEY);
    const who = token ? claims(token) : null;
    if (!who || roleOf(who) !== config.role) {
      signOut(token ? t("forbidden") : "");
      $("token").focus();
      return;
    }
    fail("");
    $("signin").hidden = true;
    $("who").hidden = false;
    $("who-sub").textContent = who.sub;
    $("app").hidden = false;
    start(who.sub);
  }

  async function boot(start) {
    started = start;
    tokenFromFragment();
    let problem = "";
    if (config.oidc) {
      $("provider-sign-in-box").hidden = false;
      $("provider-sign-in").addEventListener("click", () => {
        startProviderSignIn().catch((e) => fail(t("op_provider_failed", { error: e.message })));
      });
      problem = await finishProviderSignIn().catch((e) => t("op_provider_failed", { error: e.message }));
    }
    // The language switch keeps the page where it is; the token stays in this tab's storage.
    $("signin-form").addEventListener("submit", (e) => {
      e.preventDefault();
      sessionStorage.setItem(KEY, $("token").value.trim());
      $("token").value = "";
      signIn(started);
    });
    $("sign-out").addEventListener("click", () => signOut(""));
    signIn(start);
    if (problem) fail(problem);
  }

  window.WB = { config, t, tn, $, el, say, fail, explain, slugOf, call, download, at, month, day, showLapsing,
    statusBadge, boot };
})();
