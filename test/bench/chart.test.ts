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
});
