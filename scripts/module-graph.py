#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Module import graph of a Rust crate's src/ (usage: scripts/module-graph.py selftests/src): every `crate::a::...` path (use lines and inline
paths, code only: comments and #[cfg(test)] modules are left out), `super::`, and the
crate-root names that lib.rs re-exports or that #[macro_export] macros define, resolved to
the module that defines them. Prints the edges and the cycles (Tarjan SCC)."""
import os, re, sys
root = sys.argv[1]
mods = {}
for dp, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(dp, f)
            rel = os.path.relpath(p, root)[:-3]
            mods['crate' if rel in ('lib', 'main') else rel.replace('/', '::')] = p
def code(src):
    i = src.find('#[cfg(test)]\nmod tests')
    if i >= 0: src = src[:i]
    return '\n'.join(l for l in src.split('\n') if not l.strip().startswith('//'))
# crate-root names -> defining module
rootname = {}
lib = code(open(mods['crate']).read())
for m in re.finditer(r'pub use (\w+)::\{([^}]*)\}', lib):
    for n in m.group(2).split(','):
        if n.strip(): rootname[n.strip().split(' as ')[-1]] = m.group(1)
for m in re.finditer(r'pub use (\w+)::(\w+);', lib):
    rootname[m.group(2)] = m.group(1)
for name, p in mods.items():
    for m in re.finditer(r'#\[macro_export\]\s*macro_rules!\s*(\w+)', open(p).read()):
        rootname[m.group(1)] = name
def top(m):
    return m.split('::')[0] if m != 'crate' else 'crate'
edges = {}
for name, p in mods.items():
    src = code(open(p).read())
    tgt = set()
    for m in re.finditer(r'(?<![$\w])crate::\{([^}]*)\}', src):
        for part in m.group(1).split(','):
            if part.strip(): tgt.add(part.strip().split('::')[0])
    for m in re.finditer(r'(?<![$\w])crate::(\w+)', src):
        tgt.add(m.group(1))
    parent = name.rsplit('::', 1)[0] if '::' in name else None
    if parent:
        for m in re.finditer(r'(?<![$\w])super::(\w+|\{)', src):
            tgt.add(parent)
    res = set()
    for t in tgt:
        if t in mods: res.add(t)
        elif t in rootname: res.add(rootname[t])
        else: res.add('crate')
    n = top(name)
    edges.setdefault(n, set()).update(top(r) for r in res if top(r) != n and r != 'crate')
idx, low, st, on, sccs, c = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
for v in list(edges):
    if v not in idx: sc(v)
for k in sorted(edges):
    print(f"{k} -> {', '.join(sorted(edges[k])) or '-'}")
cyc = [s for s in sccs if len(s) > 1]
print("cycles: " + ("; ".join(' <-> '.join(sorted(s)) for s in cyc) if cyc else "none"))
