// Call Journal console: plain JavaScript, no build step, no framework.
// It calls the REST API beside it with the reader token kept in sessionStorage.
"use strict";

(() => {
  const TOKEN_KEY = "calljournal.token";
  const API = "api/v1"; // relative: the console works under a path prefix too
  const PAGE_SIZE = 50;
  const DEFAULT_DAYS = 7;
  const PLAYABLE = new Set(["stored", "uploaded", "encoding"]);

  const $ = (id) => document.getElementById(id);
  const views = { signIn: $("sign-in"), search: $("search"), call: $("call") };
  const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  let query = null; // URLSearchParams of the last search (filters only)
  let recordingPath = null; // of the call shown
  let renewedAt = 0;
  let nextPageToken = null;

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // --- talking to the API ---------------------------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  async function api(path, params, method = "GET") {
    const url = params ? `${API}/${path}?${params}` : `${API}/${path}`;
    let response;
    try {
      response = await fetch(url, {
        method,
        headers: { Authorization: `Bearer ${token()}` },
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      throw new ApiError(0, "NETWORK", "The server cannot be reached. Check the connection and try again.");
    }
    if (!response.ok) {
      let code = "", message = response.statusText;
      try {
        const body = await response.json();
        code = body.error.code;
        message = body.error.message;
      } catch (ignored) { /* not our JSON: keep the status text */ }
      throw new ApiError(response.status, code, message);
    }
    return response.json();
  }

  // A short-lived signed URL of a download (relative, so it works under a prefix): what
  // an <audio> element or a plain link can follow, since neither can send the token.
  async function signedUrl(linkPath, downloadPath, params) {
    const link = await api(linkPath, params, "POST");
    const query = new URLSearchParams(params || "");
    query.set("access", link.access);
    return `${API}/${downloadPath}?${query}`;
  }

  // Plain words for what went wrong; `what` says what we tried ("this call", …).
  function explain(error, what) {
    if (!(error instanceof ApiError)) return `Something went wrong: ${error.message}`;
    switch (error.status) {
      case 0: return error.message;
      case 401: return "Your token was refused: it is wrong or has expired. Sign in again.";
      case 403:
        if (/private/i.test(error.message)) {
          return "This call is private: its recording cannot be played or downloaded.";
        }
        return "This token is not allowed to read calls (it needs the reader role).";
      case 404: return `${what} was not found.`;
      case 410: return "The recording was deleted at the end of its retention period.";
      case 400: return `The search is not valid: ${error.message}`;
      case 429: return "Too many exports are running; try again in a minute.";
      case 503: return "The service is briefly unavailable; try again in a moment.";
      default: return `The server answered ${error.status}: ${error.message}`;
    }
  }

  function handle(error, what) {
    if (error instanceof ApiError && error.status === 401) {
      signOut();
    }
    say(explain(error, what));
  }

  // --- the page ---------------------------------------------------------------------------

  function say(text) {
    const message = $("message");
    message.textContent = text || "";
    message.hidden = !text;
  }

  function show(name) {
    for (const [key, section] of Object.entries(views)) section.hidden = key !== name;
    $("sign-out").hidden = name === "signIn";
  }

  function follow(url, name) {
    const link = document.createElement("a");
    link.href = url;
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
  }

  async function downloadRecording(event) {
    event.preventDefault();
    try {
      follow(await signedUrl(`${recordingPath}/link`, recordingPath, null), $("download").download);
    } catch (error) {
      handle(error, "The recording");
    }
  }

  // A paused player whose link expired fails its next Range request: a new link, same place.
  async function renewPlayer() {
    const player = $("player");
    if (!recordingPath || !player.getAttribute("src")) return;
    if (Date.now() - renewedAt < 10000) { // failed again at once: not an expiry
      say("The recording cannot be played now (it may have become private). Reload the call.");
      return;
    }
    renewedAt = Date.now();
    const at = player.currentTime;
    try {
      player.src = await signedUrl(`${recordingPath}/link`, recordingPath, null);
      player.currentTime = at;
    } catch (error) {
      handle(error, "The recording");
    }
  }

  function stopPlayer() {
    recordingPath = null;
    const player = $("player");
    player.pause();
    player.removeAttribute("src");
    player.load();
  }

  function timeElement(iso) {
    const element = document.createElement("time");
    element.dateTime = iso;
    element.textContent = when.format(new Date(iso));
    element.title = `${iso.replace("T", " ").replace("Z", "")} UTC`;
    return element;
  }

  function seconds(total) {
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return `${h ? `${h}:` : ""}${mm}:${String(s).padStart(2, "0")}`;
  }

  function cell(row, label, content, className) {
    const td = document.createElement("td");
    td.dataset.label = label;
    if (className) td.className = className;
    if (content instanceof Node) td.append(content);
    else td.textContent = content;
    row.append(td);
    return td;
  }

  function recordingSummary(record) {
    if (record.call.private) {
      const span = document.createElement("span");
      span.className = "locked";
      span.textContent = "private";
      return span;
    }
    if (!record.recording) return "none";
    return record.recording.status;
  }

  function party(number, name) {
    return name ? `${number} (${name})` : number;
  }

  // --- sign in and out -------------------------------------------------------------------

  async function signIn(event) {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    const button = event.submitter;
    if (button) button.disabled = true;
    try {
      // Any search proves the token: an empty one-second interval costs nothing.
      const now = new Date();
      const params = new URLSearchParams({
        from: now.toISOString(), to: new Date(now.getTime() + 1000).toISOString(), limit: "1",
      });
      await api("calls", params);
      $("token").value = "";
      say("");
      route();
    } catch (error) {
      sessionStorage.removeItem(TOKEN_KEY);
      say(explain(error, "The service"));
    } finally {
      if (button) button.disabled = false;
    }
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    stopPlayer();
    $("results").querySelector("tbody").replaceChildren();
    $("results").hidden = true;
    $("more").hidden = true;
    $("status").textContent = "";
    query = null;
    show("signIn");
    if (location.hash) history.replaceState(null, "", location.pathname);
    $("token").focus();
  }

  // --- search ----------------------------------------------------------------------------

  function filters() {
    const params = new URLSearchParams();
    const phone = $("phone").value.trim();
    const fromValue = $("from").value, toValue = $("to").value;
    let from = fromValue ? new Date(fromValue) : null; // datetime-local: the browser's zone
    let to = toValue ? new Date(toValue) : null;
    let note = "";
    if (!phone && (!from || !to)) {
      to = to || new Date();
      from = from || new Date(to.getTime() - DEFAULT_DAYS * 86400000);
      note = ` between ${when.format(from)} and ${when.format(to)}`;
    }
    if (phone) params.set("phone", phone);
    if (from) params.set("from", from.toISOString());
    if (to) params.set("to", to.toISOString());
    if ($("direction").value) params.set("direction", $("direction").value);
    if ($("has-recording").checked) params.set("has_recording", "true");
    return { params, note };
  }

  async function search(event) {
    event.preventDefault();
    const { params, note } = filters();
    query = params;
    nextPageToken = null;
    $("results").querySelector("tbody").replaceChildren();
    $("results").hidden = true;
    $("status").textContent = "Searching…";
    say("");
    await loadPage(note);
  }

  async function loadPage(note = "") {
    const params = new URLSearchParams(query);
    params.set("limit", String(PAGE_SIZE));
    if (nextPageToken) params.set("page_token", nextPageToken);
    const more = $("more");
    more.disabled = true;
    try {
      const page = await api("calls", params);
      const body = $("results").querySelector("tbody");
      for (const record of page.calls) body.append(resultRow(record));
      nextPageToken = page.next_page_token;
      const count = body.children.length;
      $("results").hidden = count === 0;
      more.hidden = !nextPageToken;
      $("status").textContent = count === 0
        ? `No calls found${note}.`
        : `${count} call${count === 1 ? "" : "s"}${nextPageToken ? " so far" : ""}${note}, newest first.`;
    } catch (error) {
      $("status").textContent = "";
      handle(error, "The page of results");
    } finally {
      more.disabled = false;
    }
  }

  function resultRow(record) {
    const call = record.call;
    const row = document.createElement("tr");
    const link = document.createElement("a");
    link.href = `#call/${call.uuid}`;
    link.append(timeElement(call.started_at));
    link.setAttribute("aria-label", `Call of ${when.format(new Date(call.started_at))} from ${call.caller_number} to ${call.destination_number}`);
    cell(row, "Started", link);
    cell(row, "Caller", party(call.caller_number, call.caller_name));
    cell(row, "Destination", call.destination_number);
    cell(row, "Direction", call.direction);
    cell(row, "Duration", seconds(call.duration_s), "num");
    cell(row, "Recording", recordingSummary(record));
    return row;
  }

  async function exportZip() {
    const { params } = filters();
    const button = $("export");
    button.disabled = true;
    say("");
    try {
      // The browser downloads the ZIP straight to disk, streamed: nothing held here.
      follow(await signedUrl("calls:export/link", "calls:export", params), "");
      $("status").textContent = "The export is downloading (see your browser's downloads).";
    } catch (error) {
      handle(error, "The export");
    } finally {
      button.disabled = false;
    }
  }

  // --- one call --------------------------------------------------------------------------

  function field(list, name, value) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    if (value instanceof Node) dd.append(value);
    else dd.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
    list.append(dt, dd);
  }

  async function openCall(uuid) {
    show("call");
    stopPlayer();
    const player = $("player"), download = $("download");
    player.hidden = true;
    player.removeAttribute("src");
    download.hidden = true;
    $("lock").hidden = true;
    $("call-fields").replaceChildren();
    $("recording-state").textContent = "";
    $("raw-text").textContent = "";
    $("call-title").textContent = "Call";
    say("");
    let record;
    try {
      record = await api(`calls/${encodeURIComponent(uuid)}`);
    } catch (error) {
      handle(error, "This call");
      return;
    }
    const call = record.call, recording = record.recording;
    $("call-title").textContent = `Call from ${call.caller_number} to ${call.destination_number}`;
    $("call-title").focus();
    const list = $("call-fields");
    field(list, "Caller", party(call.caller_number, call.caller_name));
    field(list, "Destination", call.destination_number);
    field(list, "Direction", call.direction);
    field(list, "Started", timeElement(call.started_at));
    field(list, "Answered", call.answered_at ? timeElement(call.answered_at) : "not answered");
    field(list, "Ended", call.ended_at ? timeElement(call.ended_at) : null);
    field(list, "Duration", `${seconds(call.duration_s)} (${call.duration_s} s)`);
    field(list, "Billed seconds", call.billsec);
    field(list, "Hangup cause", call.hangup_cause);
    field(list, "Hung up by", call.hangup_side);
    field(list, "SIP code", call.sip_code);
    field(list, "Source", call.source);
    field(list, "Call id", call.uuid);
    $("raw-text").textContent = JSON.stringify(call.raw, null, 2);

    const state = $("recording-state");
    if (!recording) {
      state.textContent = "This call has no recording.";
      return;
    }
    const length = recording.duration_ms ? ` · ${seconds(Math.round(recording.duration_ms / 1000))}` : "";
    const size = recording.size ? ` · ${(recording.size / 1024).toFixed(0)} KiB` : "";
    state.textContent = `State: ${recording.status}${length}${size}`;
    if (call.private) {
      $("lock").hidden = false;
      return;
    }
    if (!PLAYABLE.has(recording.status)) {
      state.textContent += recording.status === "purged"
        ? " — deleted at the end of its retention period."
        : " — the recording could not be encoded.";
      return;
    }
    try {
      // The audio element streams and seeks (Range) from a signed, short-lived URL;
      // privacy is checked again when it is used.
      const path = `calls/${encodeURIComponent(uuid)}/recording`;
      const url = await signedUrl(`${path}/link`, path, null);
      player.src = url;
      player.hidden = false;
      const extension = recording.content_type === "audio/mpeg" ? "mp3" : "wav";
      recordingPath = path;
      download.href = url; // refreshed on click: a link lives a few minutes
      download.download = `${call.uuid}.${extension}`;
      download.textContent = `Download (${extension.toUpperCase()})`;
      download.hidden = false;
    } catch (error) {
      if (error instanceof ApiError && error.status === 403) {
        $("lock").hidden = false;
      } else {
        handle(error, "The recording");
      }
    }
  }

  // --- routing ---------------------------------------------------------------------------

  function route() {
    if (!token()) {
      show("signIn");
      return;
    }
    const match = /^#call\/([0-9a-fA-F-]{32,36})$/.exec(location.hash);
    if (match) {
      openCall(match[1]);
    } else {
      stopPlayer();
      show("search");
    }
  }

  function start() {
    $("zone").textContent = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
    $("sign-in-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", signOut);
    $("search-form").addEventListener("submit", search);
    $("more").addEventListener("click", () => loadPage());
    $("export").addEventListener("click", exportZip);
    $("download").addEventListener("click", downloadRecording);
    $("player").addEventListener("error", renewPlayer);
    $("back").addEventListener("click", (event) => {
      event.preventDefault();
      location.hash = "search"; // the results are still there
    });
    window.addEventListener("hashchange", route);
    route();
    if (!token()) $("token").focus();
  }

  start();
})();
