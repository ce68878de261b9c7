// medkiosk page: pair, choose a module, upload or take a picture, show the screen's wording, save.
// No external assets; the token lives in an HttpOnly cookie; changes carry the CSRF token.
"use strict";

var state = { csrf: null, resultId: null };
// The page's texts in the kiosk's language, rendered into the page by the service (edge/serve/wording.py).
var strings = JSON.parse(document.getElementById("strings").textContent);

function tr(key) { return strings[key] || key; }

function titleFor(text) { return (strings.names && strings.names[text]) || text; }

function $(id) { return document.getElementById(id); }

function say(text) { $("status").textContent = text || ""; }

function api(method, path, body, isForm) {
  var options = { method: method, credentials: "same-origin", headers: {} };
  if (state.csrf) { options.headers["X-CSRF-Token"] = state.csrf; }
  if (body !== undefined) {
    if (isForm) { options.body = body; } else {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
  }
  return fetch(path, options).then(function (response) {
    return response.json().then(function (data) {
      if (!response.ok) {
        var error = new Error(data.error ? data.error.message : response.statusText);
        error.status = response.status;
        throw error;
      }
      return data;
    });
  });
}

function showPair() { $("pair-view").hidden = false; $("classify-view").hidden = true; }

function showClassify(session) {
  state.csrf = session.csrf_token;
  $("pair-view").hidden = true;
  $("classify-view").hidden = false;
  api("GET", "/api/v1/modules").then(function (data) {
    var select = $("module");
    data.modules.forEach(function (module) {
      if (!module.installed) { return; }
      var option = document.createElement("option");
      option.value = module.id;
      option.textContent = titleFor(module.title);
      select.appendChild(option);
    });
  }).catch(function (error) { say(error.message); });
}

function render(result) {
  var view = result.view;
  $("result").hidden = false;
  $("result-title").textContent = view.title + (result.suggested ? " " + tr("suggested") : "");
  $("result-subtitle").textContent = view.subtitle || "";
  $("result-banner").hidden = !view.banner;
  $("result-banner").textContent = view.banner || "";
  var rows = $("result-rows");
  rows.textContent = "";
  rows.className = view.dim ? "dim" : "";
  view.rows.forEach(function (row) {
    var item = document.createElement("li");
    var name = document.createElement("span");
    var percent = document.createElement("span");
    name.textContent = row.name;
    percent.textContent = row.percent;
    item.appendChild(name);
    item.appendChild(percent);
    rows.appendChild(item);
  });
  $("result-note").hidden = !view.note;
  $("result-note").textContent = view.note || "";
  $("result-disclaimer").textContent = view.disclaimer;
  $("save-button").disabled = false;
  $("referral-link").hidden = true;
  state.resultId = result.result_id;
}

// The kiosk's QR code opens https://<unit>/#code=123456: the code fills the form, and the fragment
// (never sent to the server) is dropped from the address bar and the history at once.
function codeFromAddress() {
  var found = /(?:^#|&)code=(\d{6})(?:&|$)/.exec(window.location.hash);
  if (found) {
    $("pair-code").value = found[1];
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
}

function start() {
  codeFromAddress();
  $("pair-form").addEventListener("submit", function (event) {
    event.preventDefault();
    say(tr("pairing"));
    api("POST", "/api/v1/pair", { code: $("pair-code").value, device: $("pair-device").value })
      .then(function (data) { say(tr("paired")); showClassify(data); })
      .catch(function (error) { say(error.message); });
  });
  $("classify-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var form = new FormData();
    form.append("module", $("module").value);
    form.append("image", $("image").files[0]);
    say(tr("analysing"));
    api("POST", "/api/v1/classify", form, true)
      .then(function (data) { say(""); render(data); })
      .catch(function (error) { say(error.message); });
  });
  $("save-button").addEventListener("click", function () {
    $("save-button").disabled = true;
    api("POST", "/api/v1/cases", { result_id: state.resultId })
      .then(function (data) {
        say(tr("case_saved").replace("{}", data.id));
        var link = $("referral-link");
        link.href = "/api/v1/cases/" + encodeURIComponent(data.id) + "/referral.pdf";
        link.hidden = false;
      })
      .catch(function (error) { $("save-button").disabled = false; say(error.message); });
  });
  api("GET", "/api/v1/session").then(showClassify).catch(function (error) {
    if (error.status === 401) { showPair(); } else { say(error.message); }
  });
}

document.addEventListener("DOMContentLoaded", start);
