export type GaugeSample = { labels: Record<string, string>; value: number };
export type GaugeFamily = { name: string; help: string; samples: GaugeSample[] };

/** Label values as Prometheus' text format wants them: backslash, quote and newline escaped. */
const escapeLabel = (value: string) => value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/** Gauges in Prometheus' text format (families without samples left out). */
export function gaugeText(families: GaugeFamily[]): string {
  return families
    .filter((f) => f.samples.length > 0)
    .map((f) => {
      const samples = f.samples.map(({ labels, value }) => {
        const set = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
        return `${f.name}{${set.join(',')}} ${value}\n`;
      });
      return `# HELP ${f.name} ${f.help}\n# TYPE ${f.name} gauge\n${samples.join('')}`;
    })
    .join('');
}
