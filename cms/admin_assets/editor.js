/* OneBlog admin editor: live preview. Posts the Markdown to /admin/preview (the
 * server renders it with the same code and the same raw-HTML rule as a save) and
 * shows the HTML beside the text. Without JavaScript the Preview button does the
 * same with a full page. No framework, no build step. */
(function () {
  'use strict';
  var form = document.getElementById('editor');
  var md = document.getElementById('markdown');
  var out = document.getElementById('preview');
  if (!form || !md || !out || !window.fetch) return;
  var csrf = form.querySelector('input[name="_csrf"]').value;
  var timer = null, seq = 0;

  function render() {
    var mine = ++seq;
    var body = new URLSearchParams();
    body.set('_csrf', csrf);
    body.set('markdown', md.value);
    fetch('/admin/preview', {
      method: 'POST', credentials: 'same-origin', body: body,
      headers: { 'X-CSRF-Token': csrf }
    }).then(function (r) {
      return r.text().then(function (t) { return { ok: r.ok, text: t }; });
    }).then(function (r) {
      if (mine !== seq) return; /* a newer preview is on its way */
      if (r.ok) {
        out.innerHTML = r.text;
        out.removeAttribute('data-error');
      } else {
        out.textContent = r.text;
        out.setAttribute('data-error', '1');
      }
      out.setAttribute('data-rendered', String(mine));
    }).catch(function () { /* offline: keep the last preview */ });
  }

  md.addEventListener('input', function () {
    clearTimeout(timer);
    timer = setTimeout(render, 250);
  });
  render();
})();
