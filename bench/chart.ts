// Grouped bar charts as standalone SVG (no dependencies): one group per case, one bar per series,
// value labels on the bars. Used for the charts under bench/results/ that docs/performance.md shows.

export interface ChartSeries {
  name: string;
  color: string;
  /** one value per group; NaN leaves a gap */
  values: number[];
}

export interface Chart {
  title: string;
  unit: string;
  groups: string[];
  series: ChartSeries[];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function barChartSvg(c: Chart): string {
  const barW = 22;
  const gap = 26;
  const groupW = c.series.length * barW + gap;
  const left = 60;
  const top = 48;
  const plotH = 260;
  // wide enough for the bars, and for the title (14 px bold, ~7.8 px per character)
  const width = Math.max(left + c.groups.length * groupW + 20, left + Math.ceil(c.title.length * 7.8) + 10, 360);
  // legend entries (swatch + name, ~6.2 px per character at 11 px) wrap into rows within the width
  const legend: { x: number; row: number; s: ChartSeries }[] = [];
  let lx = left;
  let row = 0;
  for (const s of c.series) {
    const w = 16 + Math.ceil(s.name.length * 6.2) + 18;
    if (lx > left && lx + w > width - 10) {
      lx = left;
      row++;
    }
    legend.push({ x: lx, row, s });
    lx += w;
  }
  const height = top + plotH + 54 + 18 * (row + 1);
  const max = Math.max(...c.series.flatMap((s) => s.values.filter(Number.isFinite)), 1);
  const step = 10 ** Math.floor(Math.log10(max));
  const ceil = Math.ceil(max / step) * step;
  const y = (v: number) => top + plotH - (v / ceil) * plotH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
  );
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${left}" y="20" font-size="14" font-weight="bold">${esc(c.title)}</text>`);
  for (let t = 0; t <= ceil + 1e-9; t += step) {
    out.push(`<line x1="${left}" x2="${width - 10}" y1="${y(t)}" y2="${y(t)}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${y(t) + 4}" text-anchor="end">${t}</text>`);
  }
  out.push(
    `<text x="14" y="${top + plotH / 2}" transform="rotate(-90 14 ${top + plotH / 2})" text-anchor="middle">${esc(c.unit)}</text>`,
  );
  c.groups.forEach((g, gi) => {
    const x0 = left + gap / 2 + gi * groupW;
    c.series.forEach((s, si) => {
      const v = s.values[gi]!;
      if (!Number.isFinite(v)) return;
      const x = x0 + si * barW;
      out.push(
        `<rect x="${x}" y="${y(v)}" width="${barW - 3}" height="${top + plotH - y(v)}" fill="${s.color}"><title>${esc(s.name)}: ${v.toFixed(1)}</title></rect>`,
      );
      out.push(
        `<text x="${x + (barW - 3) / 2}" y="${y(v) - 3}" text-anchor="middle" font-size="9">${Math.round(v)}</text>`,
      );
    });
    out.push(
      `<text x="${x0 + (c.series.length * barW) / 2}" y="${top + plotH + 16}" text-anchor="middle">${esc(g)}</text>`,
    );
  });
  for (const { x, row: r, s } of legend) {
    const ly = top + plotH + 36 + 18 * r;
    out.push(`<rect x="${x}" y="${ly}" width="12" height="12" fill="${s.color}"/>`);
    out.push(`<text x="${x + 16}" y="${ly + 10}">${esc(s.name)}</text>`);
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
