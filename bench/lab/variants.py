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
    m = list(meta[base]); m[0] = new
    with open(f'{gen}/variants.txt', 'a') as f: f.write(' '.join(m) + '\n')
# no global stores in the epilogue (staged: skip the store loop; cooperative: skip the tensor stores)
variant('def224', 'def224_nost', [('const bool vec = (N % 4 == 0)', 'if (K > 0) return;\n    const bool vec = (N % 4 == 0)')])
variant('co224', 'co224_nost', [('if (q == 0 && row0 < M) {', 'if (q == 0 && row0 < M && K < 0) {')])
