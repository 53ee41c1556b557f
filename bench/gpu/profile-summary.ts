/**
 * Where a gateway's main thread spent its time, from a V8 CPU profile (`vision.ts --profile-gateway DIR`
 * starts the gateway with --cpu-prof): self time grouped by what it served, busy time only. On the H200
 * the gateway's event loop became the limit once the replicas were fixed (busy 0.96–1.0 at ~1.1 GB/s of
 * request bodies); this says what to make cheaper. A 2-core machine's profile misleads: syscalls that wake
 * another process (the replica, the load generator) show up as time in them.
 *   node --import tsx bench/gpu/profile-summary.ts DIR/*.cpuprofile [--out FILE.md]
 */
import { readFileSync, writeFileSync } from 'node:fs';

type CallFrame = { functionName: string; url: string };
type Profile = { nodes: { id: number; callFrame: CallFrame; children?: number[] }[]; samples: number[]; timeDeltas: number[] };

/** The first matching rule, tried on a sample's frames from the innermost out, names its category. */
const RULES: [string, (f: CallFrame) => boolean][] = [
  ['garbage collection', (f) => f.functionName === '(garbage collector)'],
  ['request body copy (readBody)', (f) => f.url.endsWith('body.js') || f.url.endsWith('body.ts')],
  ['frames and /dev/shm writes to replicas', (f) => /\/(protocol|shm)\.(js|ts)$/.test(f.url)],
  ['batcher', (f) => /\/batcher\//.test(f.url)],
  ['request parsing (KServe)', (f) => /\/kserve\//.test(f.url)],
  ['HTTP request in (parser, headers, routing)', (f) => f.functionName === 'parserOnHeadersComplete' || f.functionName === 'parserOnBody'],
  ['HTTP response out', (f) => /_http_outgoing|_http_server/.test(f.url)],
  ['autoscaler', (f) => /\/autoscaler\//.test(f.url)],
  ['metrics and traces (OpenTelemetry)', (f) => /@opentelemetry|\/telemetry\//.test(f.url)],
  ['start-up (loading modules)', (f) => /loader|translators|hooks|register-/.test(f.url)],
  ['native, outside JavaScript', (f) => f.functionName === '(program)'],
];

export function summarize(profile: Profile): { category: string; ms: number; share: number }[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const totals = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i];
    if (byId.get(id)?.callFrame.functionName === '(idle)') return;
    busy += us;
    let category = 'other';
    search: for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) {
      const frame = (byId.get(x) as Profile['nodes'][number]).callFrame;
      for (const [name, matches] of RULES)
        if (matches(frame)) {
          category = name;
          break search;
        }
    }
    totals.set(category, (totals.get(category) ?? 0) + us);
  });
  return [...totals]
    .map(([category, us]) => ({ category, ms: Math.round(us / 1000), share: Math.round((us / busy) * 1000) / 1000 }))
    .sort((a, b) => b.ms - a.ms);
}

if (process.argv[1]?.endsWith('profile-summary.ts')) {
  const files = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && all[i - 1] !== '--out');
  const out = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1] : undefined;
  const md = files
    .map((file) => {
      const rows = summarize(JSON.parse(readFileSync(file, 'utf8')) as Profile);
      return `### ${file.split('/').pop()}\n\n| main thread, busy time | ms | share |\n|---|---|---|\n${rows.map((r) => `| ${r.category} | ${r.ms} | ${r.share} |`).join('\n')}\n`;
    })
    .join('\n');
  console.log(md);
  if (out) writeFileSync(out, md);
}
