// Small progressive enhancement: the form works without JS (a GET to /).
(function () {
  const form = document.getElementById("plan-form");
  const result = document.getElementById("result");
  const share = document.getElementById("share");
  let seq = 0;
  function query() {
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(form)) {
      if (String(v).trim() !== "") params.append(k, v);
    }
    return params.toString();
  }
  async function update() {
    const q = query();
    const mine = ++seq;
    result.setAttribute("aria-busy", "true");
    try {
      const r = await fetch("/ui/plan?" + q);
      const html = await r.text();
      if (mine !== seq) return; // a newer request is on its way
      result.innerHTML = html;
      result.dataset.query = q;
      const url = q ? "/?" + q : "/";
      history.replaceState(null, "", url);
      share.href = url;
    } finally {
      if (mine === seq) result.removeAttribute("aria-busy");
    }
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); update(); });
  form.addEventListener("change", (e) => {
    if (e.target.tagName !== "TEXTAREA") update();
  });
  // advice and sweep: fragments for the same query string (their inputs belong to the form)
  async function panel(path, out) {
    const q = query();
    out.setAttribute("aria-busy", "true");
    out.innerHTML = "<p class=small>working…</p>";
    const r = await fetch(path + "?" + q);
    out.innerHTML = await r.text();
    out.removeAttribute("aria-busy");
    history.replaceState(null, "", q ? "/?" + q : "/");
    share.href = q ? "/?" + q : "/";
  }
  document.getElementById("advise-button").addEventListener("click",
    () => panel("/ui/advise", document.getElementById("advice-result")));
  document.getElementById("sweep-button").addEventListener("click",
    () => panel("/ui/sweep", document.getElementById("sweep-result")));

  const explainForm = document.getElementById("explain-form");
  const explainOut = document.getElementById("explain-result");
  document.getElementById("log-file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) file.text().then((t) => { document.getElementById("log").value = t; });
  });
  explainForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    explainOut.setAttribute("aria-busy", "true");
    const online = document.getElementById("online").checked ? "?online=true" : "";
    const r = await fetch("/ui/explain" + online, {
      method: "POST", headers: { "content-type": "text/plain; charset=utf-8" },
      body: document.getElementById("log").value,
    });
    explainOut.innerHTML = await r.text();
    explainOut.removeAttribute("aria-busy");
  });
})();
