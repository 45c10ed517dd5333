// The hub's notification page: subscribes over /connection/ws (docs/hub-protocol.md), shows each
// notification as a toast and in a filterable list, and resumes from the last position of each
// channel after a reconnect or a reload.
'use strict';

(() => {
  const LEVELS = ['info', 'success', 'warning', 'error'];
  const ICONS = { info: 'i', success: '\u2713', warning: '!', error: '\u2715' };
  // Errors stay longest: they are the ones a person must not miss.
  const TOAST_MS = { info: 5000, success: 5000, warning: 8000, error: 12000 };
  const MAX_TOASTS = 6;
  const MAX_LIST = 1000;
  const HISTORY_PAGE = 100;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const POSITIONS_KEY = 'protolab.hub.positions';

  const params = new URLSearchParams(location.search);
  const token = params.get('token');
  const $ = (id) => document.getElementById(id);

  let channels = [];
  // channel -> "EPOCH:OFFSET" of the last notification this page got.
  let positions = loadPositions();
  const listed = new Set();
  let socket = null;
  let attempt = 0;
  let countdown = null;
  let commandId = 0;

  function loadPositions() {
    try {
      const stored = JSON.parse(sessionStorage.getItem(POSITIONS_KEY) || '{}');
      return stored && typeof stored === 'object' ? stored : {};
    } catch (_) {
      return {};
    }
  }

  function savePositions() {
    try {
      sessionStorage.setItem(POSITIONS_KEY, JSON.stringify(positions));
    } catch (_) {
      // Storage full or refused: resuming after a reload is lost, live delivery is not.
    }
  }

  function withToken(path) {
    const url = new URL(path, location.href);
    if (token) url.searchParams.set('token', token);
    return url;
  }

  function setState(state, text) {
    const el = $('state');
    el.dataset.state = state;
    el.textContent = text || state;
  }

  function notice(text) {
    $('notice-text').textContent = text;
    $('notice').hidden = false;
  }

  // The channels to watch: ?channels=a,b, else every channel the hub lists plus `notifs`.
  async function discoverChannels() {
    const asked = params.get('channels');
    if (asked) return asked.split(',').map((c) => c.trim()).filter(Boolean);
    const found = new Set(['notifs']);
    try {
      const res = await fetch('/api/channels', { cache: 'no-store' });
      if (res.ok) (await res.json()).channels.forEach((c) => found.add(c.channel));
    } catch (_) {
      // Hub unreachable or listing refused: watch what is known.
    }
    channels.forEach((c) => found.add(c));
    return [...found].sort();
  }

  // Fills the list from history; a channel seen for the first time is then subscribed from
  // where its history ends, so nothing falls between the list and the live stream.
  async function loadHistory(channel) {
    try {
      const read = async (since) => {
        const url = withToken('/api/history');
        url.searchParams.set('channel', channel);
        url.searchParams.set('limit', String(HISTORY_PAGE));
        if (since) url.searchParams.set('since', since);
        const res = await fetch(url, { cache: 'no-store' });
        return res.ok ? res.json() : null;
      };
      let page = await read(null);
      if (!page) return;
      const last = page.notifications.length ? page.notifications[page.notifications.length - 1].offset : 0;
      if (last < page.offset) {
        // History holds more than a page: show its newest ones.
        page = (await read(page.epoch + ':' + Math.max(0, page.offset - HISTORY_PAGE))) || page;
      }
      page.notifications.forEach((n) => addToList(n));
      // An unknown channel reads with an empty epoch: it is subscribed from its start.
      if (!positions[channel] && page.epoch) {
        positions[channel] = page.epoch + ':' + page.offset;
        savePositions();
      }
    } catch (_) {
      // No history: the subscription starts live.
    }
  }

  function connect() {
    clearInterval(countdown);
    if (navigator.onLine === false) {
      setState('offline');
      return;
    }
    setState('connecting');
    const url = withToken('/connection/ws');
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(url);
    socket = ws;
    ws.onopen = async () => {
      if (attempt > 0 && !params.get('channels')) channels = await discoverChannels();
      if (socket !== ws) return;
      const subs = channels.map((channel) => {
        // No position: the channel had no history when the page looked, so all it holds is new.
        return { channel, since: positions[channel] || 'start' };
      });
      ws.send(JSON.stringify({ type: 'subscribe', id: ++commandId, channels: subs }));
    };
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      handle(message);
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      socket = null;
      if (event.code === 4008) notice('The hub closed this page as a slow subscriber; it resumes from its last positions.');
      scheduleReconnect();
    };
  }

  function handle(message) {
    switch (message.type) {
      case 'subscribed':
        attempt = 0;
        setState('live');
        if (!message.recovered) {
          notice('Channel ' + message.channel + ': the hub could not recover everything since this page\'s last position ' +
            '(its history was lost or no longer reaches back): some notifications may be missing.');
        }
        if (!positions[message.channel] || !message.recovered) {
          // The stream restarts in this epoch: from here, or from what history sends next.
          positions[message.channel] = message.epoch + ':' + (message.recovered ? message.offset : 0);
          savePositions();
        }
        break;
      case 'notification':
        positions[message.channel] = message.epoch + ':' + message.offset;
        savePositions();
        addToList(message);
        toast(message);
        break;
      case 'error':
        notice('The hub refused ' + (message.channel ? 'channel ' + message.channel : 'a command') + ' (' +
          message.code + '): ' + message.message);
        break;
      default:
        break;
    }
  }

  // Exponential backoff with jitter, so pages that lost the same hub do not all come back at once.
  function scheduleReconnect() {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    attempt += 1;
    const due = Date.now() + delay;
    const show = () => {
      const seconds = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      setState('reconnecting', 'reconnecting in ' + seconds + 's');
    };
    show();
    clearInterval(countdown);
    countdown = setInterval(show, 250);
    setTimeout(connect, delay);
  }

  function toast(n) {
    const box = $('toasts');
    while (box.children.length >= MAX_TOASTS) box.firstChild.remove();
    const level = LEVELS.includes(n.level) ? n.level : 'info';
    const ms = TOAST_MS[level];
    const el = document.createElement('div');
    el.className = 'toast toast-' + level;
    el.setAttribute('role', level === 'error' ? 'alert' : 'status');
    const icon = document.createElement('span');
    icon.className = 'toast-icon';
    icon.textContent = ICONS[level];
    const text = document.createElement('div');
    const channel = document.createElement('div');
    channel.className = 'toast-channel';
    channel.textContent = n.channel;
    text.append(channel);
    if (n.title) {
      const title = document.createElement('div');
      title.className = 'toast-title';
      title.textContent = n.title;
      text.append(title);
    }
    const body = document.createElement('div');
    body.className = 'toast-message';
    body.textContent = n.body;
    text.append(body);
    const progress = document.createElement('div');
    progress.className = 'toast-progress';
    progress.style.animationDuration = ms + 'ms';
    el.append(icon, text, progress);
    // The bar runs out when the toast goes; hovering pauses both, as toastr does.
    progress.addEventListener('animationend', () => el.remove());
    el.addEventListener('click', () => el.remove());
    box.append(el);
  }

  function addToList(n) {
    const key = n.channel + '@' + n.epoch + ':' + n.offset;
    if (listed.has(key)) return;
    listed.add(key);
    const level = LEVELS.includes(n.level) ? n.level : 'info';
    const li = document.createElement('li');
    li.className = 'level-' + level;
    li.dataset.level = level;
    li.dataset.channel = n.channel;
    const cells = [new Date(n.time_ms).toLocaleTimeString(), level, n.channel];
    cells.forEach((value) => {
      const span = document.createElement('span');
      span.textContent = value;
      li.append(span);
    });
    const message = document.createElement('span');
    if (n.title) {
      const title = document.createElement('span');
      title.className = 'title';
      title.textContent = n.title;
      message.append(title);
    }
    message.append(document.createTextNode(n.body));
    li.append(message);
    li.dataset.text = ((n.title || '') + ' ' + n.body + ' ' + n.channel).toLowerCase();
    const list = $('history');
    // Newest first, by time, whatever order history and live deliveries arrive in.
    let before = list.firstChild;
    while (before && Number(before.dataset.time) > n.time_ms) before = before.nextSibling;
    li.dataset.time = String(n.time_ms);
    list.insertBefore(li, before);
    while (list.children.length > MAX_LIST) list.lastChild.remove();
    addChannelOption(n.channel);
    applyFilter(li);
    updateCount();
  }

  function addChannelOption(channel) {
    const select = $('filter-channel');
    if ([...select.options].some((o) => o.value === channel)) return;
    const option = document.createElement('option');
    option.value = channel;
    option.textContent = channel;
    select.append(option);
  }

  function applyFilter(li) {
    const text = $('filter-text').value.trim().toLowerCase();
    const levels = new Set([...document.querySelectorAll('.filter-level:checked')].map((c) => c.value));
    const channel = $('filter-channel').value;
    li.hidden = !(levels.has(li.dataset.level) &&
      (!channel || li.dataset.channel === channel) &&
      (!text || li.dataset.text.includes(text)));
  }

  function updateCount() {
    const all = $('history').children.length;
    const shown = [...$('history').children].filter((li) => !li.hidden).length;
    $('count').textContent = shown === all ? all + ' notifications' : shown + ' of ' + all + ' notifications';
  }

  function refilter() {
    [...$('history').children].forEach(applyFilter);
    updateCount();
  }

  async function start() {
    $('notice-close').addEventListener('click', () => { $('notice').hidden = true; });
    $('filter-text').addEventListener('input', refilter);
    $('filter-channel').addEventListener('change', refilter);
    document.querySelectorAll('.filter-level').forEach((c) => c.addEventListener('change', refilter));
    window.addEventListener('online', () => { if (!socket) { attempt = 0; connect(); } });
    window.addEventListener('offline', () => { if (!socket) setState('offline'); });
    channels = await discoverChannels();
    channels.forEach(addChannelOption);
    $('channels').textContent = 'channels: ' + channels.join(', ');
    await Promise.all(channels.map(loadHistory));
    updateCount();
    connect();
  }

  start();
})();
