/** A small timeline chart as SVG: panels stacked over one time axis, each a step line. No dependencies. */
export type Series = { label: string; color: string; points: [number, number][] };
export type Panel = { title: string; unit: string; series: Series[]; marks?: { at: number; label: string }[] };

export function timeline(panels: Panel[], opts: { title: string; seconds: number; width?: number }): string {
  const width = opts.width ?? 900;
  const left = 70;
  const right = 20;
  const panelHeight = 150;
  const gap = 50;
  const top = 50;
  const plotWidth = width - left - right;
  const height = top + panels.length * (panelHeight + gap) + 10;
  const x = (s: number) => left + (s / opts.seconds) * plotWidth;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="24" font-size="16" font-weight="bold">${esc(opts.title)}</text>`,
  ];
  panels.forEach((panel, i) => {
    const y0 = top + i * (panelHeight + gap) + 20;
    const values = panel.series.flatMap((s) => s.points.map((p) => p[1]));
    const highest = Math.max(1, ...values);
    // Counts (replicas) get whole-number gridlines.
    const max = values.every(Number.isInteger) && highest <= 8 ? (highest <= 4 ? 4 : 8) : niceMax(highest);
    const y = (v: number) => y0 + panelHeight - (v / max) * panelHeight;
    out.push(`<text x="${left}" y="${y0 - 8}" font-weight="bold">${esc(panel.title)}</text>`);
    for (let k = 0; k <= 4; k++) {
      const v = (max * k) / 4;
      out.push(`<line x1="${left}" x2="${left + plotWidth}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`);
      out.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end" fill="#555">${fmt(v)}${k === 4 ? ` ${esc(panel.unit)}` : ''}</text>`);
    }
    for (let s = 0; s <= opts.seconds; s += tick(opts.seconds)) {
      out.push(`<text x="${x(s)}" y="${y0 + panelHeight + 14}" text-anchor="middle" fill="#555">${s}s</text>`);
    }
    for (const m of panel.marks ?? []) {
      out.push(`<line x1="${x(m.at)}" x2="${x(m.at)}" y1="${y0}" y2="${y0 + panelHeight}" stroke="#999" stroke-dasharray="4 3"/>`);
      out.push(`<text x="${x(m.at) + 3}" y="${y0 + 10}" fill="#777">${esc(m.label)}</text>`);
    }
    panel.series.forEach((series, j) => {
      const path = series.points
        .map(([t, v], k) => `${k === 0 ? 'M' : 'H'}${x(t).toFixed(1)}${k === 0 ? ` ${y(v).toFixed(1)}` : ` V${y(v).toFixed(1)}`}`)
        .join(' ');
      out.push(`<path d="${path}" fill="none" stroke="${series.color}" stroke-width="2"/>`);
      out.push(`<rect x="${left + plotWidth - 150}" y="${y0 - 18 + j * 14}" width="10" height="3" fill="${series.color}"/>`);
      out.push(`<text x="${left + plotWidth - 136}" y="${y0 - 13 + j * 14}" fill="#333">${esc(series.label)}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('\n');
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
const fmt = (v: number) => (v >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1));
const tick = (seconds: number) => (seconds > 120 ? 20 : seconds > 60 ? 10 : 5);
function niceMax(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v) ?? v;
}
