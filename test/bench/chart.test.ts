// The benchmark charts: a bar per series and group, scaled to a round axis maximum, text escaped.
import { describe, expect, it } from 'vitest';
import { barChartSvg } from '../../bench/chart.js';

describe('bar chart SVG', () => {
  it('draws one bar per finite value with its label and escapes text', () => {
    const svg = barChartSvg({
      title: 'A < B & C',
      unit: 'TFLOP/s',
      groups: ['g1', 'g2'],
      series: [
        { name: 'ours', color: '#000', values: [500, 250] },
        { name: 'theirs', color: '#888', values: [NaN, 1000] },
      ],
    });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/<rect x=[^>]*><title>/g)).toHaveLength(3);
    expect(svg).toContain('A &lt; B &amp; C');
    expect(svg).toContain('>1000<');
    expect(svg).toContain('ours: 500.0');
    // the axis runs to a round maximum: 1000 for a largest value of 1000
    expect(svg).toMatch(/>1000<\/text>/);
  });

  it('wraps a long legend into rows inside the chart', () => {
    const names = [
      'sfc FP8 (lazyRescale + rowSumMma)',
      'sfc bf16',
      'PyTorch SDPA bf16 (default)',
      'SDPA cuDNN',
      'SDPA flash',
    ];
    const svg = barChartSvg({
      title: 'attention',
      unit: 'TFLOP/s',
      groups: ['4680', '18720', '32760'],
      series: names.map((name, i) => ({ name, color: `#${i}${i}${i}`, values: [1, 2, 3] })),
    });
    const width = Number(/<svg[^>]* width="(\d+)"/.exec(svg)![1]);
    const height = Number(/<svg[^>]* height="(\d+)"/.exec(svg)![1]);
    for (const name of names) {
      const m = new RegExp(
        `<text x="(\\d+(?:\\.\\d+)?)" y="(\\d+(?:\\.\\d+)?)">${name.replace(/[()+]/g, '\\$&')}</text>`,
      ).exec(svg);
      expect(m, name).not.toBeNull();
      const [x, y] = [Number(m![1]), Number(m![2])];
      expect(x + name.length * 6.2, name).toBeLessThanOrEqual(width);
      expect(y, name).toBeLessThanOrEqual(height);
    }
    expect(width).toBeGreaterThanOrEqual(60 + 'attention'.length * 7.8);
    // more than one row of entries
    expect(new Set([...svg.matchAll(/<rect x="\d+" y="(\d+)" width="12"/g)].map((m) => m[1])).size).toBeGreaterThan(1);
  });
});
