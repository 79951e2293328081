# Hand-edited variants of generated sources (experiments only): writes gen/<id>.cu and appends to variants.txt.
import re, sys
gen = sys.argv[1] if len(sys.argv) > 1 else 'gen'
meta = {l.split()[0]: l.split() for l in open(f'{gen}/variants.txt') if l.strip()}
def variant(base, new, edits):
    s = open(f'{gen}/{base}.cu').read()
    for a, b in edits:
        if a not in s: raise SystemExit(f'{new}: edit not found: {a[:60]}')
        s = s.replace(a, b)
    open(f'{gen}/{new}.cu', 'w').write(s)
    if base not in meta: meta.update({l.split()[0]: l.split() for l in open(f'{gen}/variants.txt') if l.strip()})
    m = list(meta[base]); m[0] = new
    with open(f'{gen}/variants.txt', 'a') as f: f.write(' '.join(m) + '\n')
# no global stores in the epilogue (staged: skip the store loop; cooperative: skip the tensor stores)
variant('def224', 'def224_nost', [('const bool vec = (N % 4 == 0)', 'if (K > 0) return;\n    const bool vec = (N % 4 == 0)')])
variant('co224', 'co224_nost', [('if (q == 0 && row0 < M) {', 'if (q == 0 && row0 < M && K < 0) {')])
variant('co256', 'co256_nost', [('if (q == 0 && row0 < M) {', 'if (q == 0 && row0 < M && K < 0) {')])
variant('f8co256', 'f8co256_nost', [('if (q == 0 && row0 < M) {', 'if (q == 0 && row0 < M && K < 0) {')])
variant('f8co224', 'f8co224_nost', [('if (q == 0 && row0 < M) {', 'if (q == 0 && row0 < M && K < 0) {')])
# timing only: B loads half as many rows (the rest of the B slot is stale), to see whether the mainloop waits on loads
variant('f8co256_nost', 'f8co256_nost_halfb', [('expect_tx(fb, 49152)', 'expect_tx(fb, 32768)'), ('// LAB_FLAGS: -DLAB_COOP -DLAB_FP8', '// LAB_FLAGS: -DLAB_COOP -DLAB_FP8 -DLAB_BBOX=128')])
variant('co256_nost', 'co256_nost_halfb', [('expect_tx(fb, 49152)', 'expect_tx(fb, 32768)'), ('// LAB_FLAGS: -DLAB_COOP', '// LAB_FLAGS: -DLAB_COOP -DLAB_BBOX=128')])
