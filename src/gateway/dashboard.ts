/**
 * The live status page: one HTML document, no build step. It polls /admin/stats once a second and draws
 * each model's replicas, queue, throughput, p50/p99 latency and batch-size distribution, and how busy the
 * gateway's own event loop is.
 */
export const dashboardHtml = /* html */ `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>infergate</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2430; }
  header { background: #1d2430; color: #fff; padding: 12px 20px; display: flex; justify-content: space-between; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  main { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 16px; padding: 16px; }
  .card { background: #fff; border-radius: 8px; padding: 14px 16px; box-shadow: 0 1px 2px #0002; }
  .card h2 { font-size: 16px; margin: 0 0 6px; display: flex; gap: 8px; align-items: center; }
  .kind { font-size: 11px; font-weight: normal; color: #667; border: 1px solid #ccd; border-radius: 10px; padding: 0 6px; }
  .numbers { display: grid; grid-template-columns: repeat(4, 1fr); gap: 6px; margin: 10px 0; }
  .numbers div { background: #f4f5f7; border-radius: 6px; padding: 6px; text-align: center; }
  .numbers b { display: block; font-size: 18px; }
  .numbers span { font-size: 11px; color: #667; }
  .replicas { display: flex; flex-wrap: wrap; gap: 4px; min-height: 22px; }
  .replica { font-size: 11px; border-radius: 4px; padding: 2px 6px; color: #fff; }
  .ready { background: #2b7a2b; } .starting { background: #e08a00; } .draining { background: #9b4dca; }
  .bars { display: flex; align-items: flex-end; gap: 3px; height: 60px; margin-top: 6px; }
  .bar { background: #1f5fbf; min-width: 14px; position: relative; }
  .bar i { position: absolute; bottom: -16px; left: 0; right: 0; text-align: center; font-size: 10px; font-style: normal; color: #667; }
  .label { font-size: 12px; color: #667; margin-top: 10px; }
  svg.spark { width: 100%; height: 40px; }
  .muted { color: #99a; }
</style>
</head>
<body>
<header><h1>infergate</h1><span><span id="gateway" title="share of the last 10 s the gateway's event loop (and each intake thread's) was busy: near 100%, the gateway itself is the limit"></span> <span id="updated" class="muted">connecting…</span></span></header>
<main id="models"></main>
<script>
const history = {};
const esc = (s) => String(s).replace(/[&<>"]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[ch]);
function spark(points) {
  if (points.length < 2) return '';
  const max = Math.max(1, ...points);
  const d = points.map((v, i) => (i ? 'L' : 'M') + ((i / (points.length - 1)) * 100).toFixed(1) + ' ' + (38 - (v / max) * 36).toFixed(1)).join(' ');
  return '<svg class="spark" viewBox="0 0 100 40" preserveAspectRatio="none"><path d="' + d + '" fill="none" stroke="#1f5fbf" stroke-width="1.5" vector-effect="non-scaling-stroke"/></svg>';
}
function bars(sizes) {
  const entries = Object.entries(sizes || {}).map(([k, v]) => [Number(k), v]).sort((a, b) => a[0] - b[0]);
  if (!entries.length) return '<div class="muted">no batches yet</div>';
  const max = Math.max(...entries.map((e) => e[1]));
  return '<div class="bars">' + entries.map(([size, n]) => '<div class="bar" title="' + n + ' batches of ' + size + '" style="height:' + Math.max(2, (n / max) * 60) + 'px"><i>' + size + '</i></div>').join('') + '</div>';
}
const mb = (bytes) => (bytes / 2 ** 20).toFixed(1) + ' MB';
function stepTime(ms) {
  // Where the replicas' step time went: prompts, decoding; of those, drawing tokens; of that, response formats' masks.
  const total = ms ? ms.prefill + ms.decode : 0;
  if (!total) return '';
  const pct = (x) => Math.round((100 * x) / total) + '%';
  return '<div class="label" style="margin-top:22px">step time · <span data-stat="steptime">prefill ' + pct(ms.prefill) + ' · decode ' + pct(ms.decode) + ' · of which sampling ' + pct(ms.sampling) + ', grammar ' + pct(ms.grammar) + '</span></div>';
}
function card(m) {
  const s = m.stats;
  const queued = m.kind === 'generative' ? s.queued : s.queuedRequests;
  const h = (history[m.model] = (history[m.model] || []).concat(m.latency.perSecond).slice(-60));
  const sizes = m.kind === 'generative' ? s.stepSizes : s.batchSizes;
  return '<section class="card" data-model="' + esc(m.model) + '">' +
    '<h2>' + esc(m.model) + ' <span class="kind">' + m.kind + '</span> <span class="kind">' + (m.ready ? 'ready' : 'not ready') + '</span>' +
    (m.versions ? ' <span class="kind" data-stat="versions">versions ' + m.versions.map(esc).join(', ') + '</span>' : '') +
    (m.adapters && m.adapters.length ? ' <span class="kind" data-stat="adapters">LoRA ' + m.adapters.map(esc).join(', ') + '</span>' : '') + '</h2>' +
    '<div class="replicas">' + (m.kind === 'ensemble' ? '<span class="muted">steps: ' + s.steps.map(esc).join(' → ') + '</span>' : m.replicas.length ? m.replicas.map((r) => '<span class="replica ' + r.state + '" title="pid ' + r.pid + ', ' + esc(r.device) + '">' + esc(r.id) + ' · ' + r.state + (r.models ? ' · ' + r.models.map(esc).join(', ') : '') + (r.gpuMemoryBytes ? ' · ' + Math.round(r.gpuMemoryBytes / 2 ** 20) + ' MiB GPU' : '') + '</span>').join('') : '<span class="muted">scaled to zero</span>') + '</div>' +
    '<div class="numbers">' +
      '<div><b data-stat="throughput">' + m.latency.perSecond + '</b><span>req/s (10 s)</span></div>' +
      '<div><b data-stat="p50">' + m.latency.p50Ms + '</b><span>p50 ms</span></div>' +
      '<div><b data-stat="p99">' + m.latency.p99Ms + '</b><span>p99 ms</span></div>' +
      '<div><b data-stat="queue">' + queued + '</b><span>queued</span></div>' +
    '</div>' +
    '<div class="label">' + (m.kind === 'generative' ? 'sequences per step' : 'rows per batch') + ' · <span data-stat="total">' + (m.kind === 'generative' ? s.tokens + ' tokens' : s.requests + ' requests') + '</span>' +
      (s.draftTokens ? ' · <span data-stat="drafts">drafts taken ' + Math.round((100 * s.acceptedDraftTokens) / s.draftTokens) + '%</span>' : '') +
      (s.cacheBytes ? ' · <span data-stat="cache">KV cache ' + mb(s.cacheBytes.kv) + ' · prefix cache ' + mb(s.cacheBytes.prefix) + '</span>' : '') + '</div>' + bars(sizes) +
    (m.kind === 'generative' ? stepTime(s.stepMs) : '') +
    '<div class="label" style="margin-top:22px">throughput, last minute</div>' + spark(h) +
    '</section>';
}
async function refresh() {
  try {
    const res = await fetch('/admin/stats', { headers: { accept: 'application/json' } });
    if (!res.ok) throw new Error(res.status + ' ' + res.statusText);
    const data = await res.json();
    document.getElementById('models').innerHTML = data.models.map(card).join('');
    const pct = (x) => Math.round(x * 100) + '%';
    const intake = data.gateway.intakeBusy ? ' · intake threads ' + data.gateway.intakeBusy.map(pct).join(', ') : '';
    // nvidia-smi's readings, where it answers (telemetry.gpu_metrics): each card's utilization and memory.
    const gib = (bytes) => (bytes / 2 ** 30).toFixed(1);
    const gpus = (data.gpus || []).map((g) => ' · GPU ' + g.index + (g.utilization === undefined ? '' : ' ' + pct(g.utilization)) + (g.memoryUsedBytes === undefined ? '' : ' ' + gib(g.memoryUsedBytes) + '/' + gib(g.memoryTotalBytes) + ' GiB')).join('');
    document.getElementById('gateway').textContent = 'event loop busy ' + pct(data.gateway.eventLoopBusy) + intake + gpus + ' ·';
    document.getElementById('updated').textContent = 'updated ' + new Date(data.at).toLocaleTimeString();
  } catch (err) {
    document.getElementById('updated').textContent = 'cannot reach the gateway: ' + err.message;
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>`;
