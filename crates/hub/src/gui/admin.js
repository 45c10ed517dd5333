// The hub's admin page: polls /api/stats every second (rates are counter deltas over the time
// between two answers) and publishes with POST /api/publish. The API key typed here stays in
// this page's memory: never stored, never in a URL.
'use strict';

(() => {
  const POLL_MS = 1000;
  const $ = (id) => document.getElementById(id);
  let apiKey = '';
  let previous = null;

  function headers() {
    const h = { 'Content-Type': 'application/json' };
    if (apiKey) h.Authorization = 'Bearer ' + apiKey;
    return h;
  }

  function setState(state, text) {
    $('poll').dataset.state = state;
    $('poll').textContent = text || state;
  }

  function rate(now, before, seconds) {
    if (before === undefined || seconds <= 0) return '–';
    const r = Math.max(0, now - before) / seconds;
    return r >= 10 ? String(Math.round(r)) : r.toFixed(1);
  }

  function row(cells, numeric) {
    const tr = document.createElement('tr');
    cells.forEach((value, i) => {
      const td = document.createElement('td');
      td.textContent = String(value);
      if (numeric.includes(i)) td.className = 'num';
      tr.append(td);
    });
    return tr;
  }

  function delivered(stats) {
    return stats.transports.reduce((sum, t) => sum + t.delivered, 0);
  }

  function render(stats) {
    const seconds = previous ? (stats.time_ms - previous.time_ms) / 1000 : 0;
    $('rate-published').textContent = rate(stats.published, previous && previous.published, seconds);
    $('rate-delivered').textContent = rate(delivered(stats), previous && delivered(previous), seconds);
    $('published').textContent = String(stats.published);
    $('duplicates').textContent = String(stats.duplicates);
    $('refused').textContent = String(stats.refused);
    const before = new Map(previous ? previous.transports.map((t) => [t.transport, t.delivered]) : []);
    $('transports').replaceChildren(...stats.transports.map((t) => {
      const tr = row([t.transport, t.connections, t.delivered, rate(t.delivered, before.get(t.transport), seconds)], [1, 2, 3]);
      tr.dataset.transport = t.transport;
      return tr;
    }));
    $('channel-rows').replaceChildren(...stats.channels.map((c) => {
      const tr = row([c.channel, c.offset, c.epoch, c.history, c.subscribers], [1, 3, 4]);
      tr.dataset.channel = c.channel;
      return tr;
    }));
    previous = stats;
  }

  async function poll() {
    try {
      const res = await fetch('/api/stats', { headers: headers(), cache: 'no-store' });
      const body = await res.json().catch(() => ({}));
      if (res.ok) {
        setState('live');
        render(body);
      } else {
        setState('offline', res.status === 401 ? 'enter the API key below' : 'error ' + res.status);
        previous = null;
      }
    } catch (_) {
      setState('offline', 'hub unreachable');
      previous = null;
    }
    setTimeout(poll, POLL_MS);
  }

  async function publish(event) {
    event.preventDefault();
    const form = event.target;
    form.querySelectorAll('.invalid').forEach((el) => el.classList.remove('invalid'));
    apiKey = form.elements.api_key.value.trim();
    const publication = {
      channel: form.elements.channel.value.trim(),
      level: form.elements.level.value,
      title: form.elements.title.value,
      body: form.elements.body.value,
    };
    const answer = $('answer');
    answer.className = 'answer';
    answer.textContent = 'publishing…';
    try {
      const res = await fetch('/api/publish', { method: 'POST', headers: headers(), body: JSON.stringify(publication) });
      const body = await res.json().catch(() => ({}));
      if (res.ok) {
        answer.classList.add('ok');
        answer.textContent = (body.duplicate ? 'already published' : 'published') + ' on ' + body.channel +
          ' at offset ' + body.offset + ' (epoch ' + body.epoch + ')';
      } else {
        answer.classList.add('error');
        answer.textContent = res.status + ': ' + (body.error || res.statusText) + (body.field ? ' (field: ' + body.field + ')' : '');
        const field = body.field && form.elements[body.field];
        if (field) field.classList.add('invalid');
      }
    } catch (err) {
      answer.classList.add('error');
      answer.textContent = 'the hub did not answer: ' + err.message;
    }
  }

  $('publish').addEventListener('submit', publish);
  $('publish').elements.api_key.addEventListener('input', (e) => { apiKey = e.target.value.trim(); });
  poll();
})();
