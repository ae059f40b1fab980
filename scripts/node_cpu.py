#!/usr/bin/env python3
"""node_cpu.py SECONDS [DIR]: samples every streamstore-node process and the harness (binaries under DIR,
default: anywhere) every 0.25 s: CPU time (utime+stime of
/proc/<pid>/stat) and the node's streamstore_node_records_appended_total from /metrics. Prints,
per node process, CPU us per append of the node and of the harness over the steady intervals
(>= 500 appends in the interval). Reads only; stops after `seconds`."""
import os, sys, time, re, urllib.request
tck = os.sysconf('SC_CLK_TCK')
prefix = sys.argv[2] if len(sys.argv) > 2 else '/'
def cpu(pid):
    try:
        f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
        return (int(f[11]) + int(f[12])) / tck
    except Exception:
        return None
def procs():
    out = {}
    for p in os.listdir('/proc'):
        if not p.isdigit(): continue
        try:
            comm = open(f'/proc/{p}/comm').read().strip()
        except Exception: continue
        try: exe = os.readlink(f'/proc/{p}/exe')
        except Exception: continue
        if exe.startswith(prefix):
            # The harness's and the node's binary names (copies may be renamed `*-bench`/`*-node`).
            comm = os.path.basename(exe).replace('streamstore-', '')
            try: cmd = open(f'/proc/{p}/cmdline').read().split('\0')
            except Exception: continue
            out[int(p)] = (comm, cmd)
    return out
def appended(port):
    try:
        t = urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=0.3).read().decode()
        m = re.search(r'^streamstore_node_records_appended_total (\d+)', t, re.M)
        return int(m.group(1)) if m else 0
    except Exception:
        return None
seconds = float(sys.argv[1]); end = time.time() + seconds
last = {}; acc = {}
while time.time() < end:
    ps = procs()
    bench = [p for p, (c, _) in ps.items() if c.endswith('bench')]
    for p, (c, cmd) in ps.items():
        if not c.endswith('node'): continue
        port = next((cmd[i+1].rsplit(':', 1)[1] for i, a in enumerate(cmd) if a == '--listen'), None)
        n = appended(port); c1 = cpu(p); b1 = cpu(bench[0]) if bench else None
        if None in (n, c1, b1): continue
        if p in last:
            n0, c0, b0 = last[p]
            if n - n0 >= 500:
                a = acc.setdefault(p, [os.readlink(f'/proc/{p}/exe'), 0, 0.0, 0.0])
                a[1] += n - n0; a[2] += c1 - c0; a[3] += b1 - b0
        last[p] = (n, c1, b1)
    time.sleep(0.25)
for p, (exe, n, c, b) in acc.items():
    print(f'{os.path.basename(exe)} pid {p}: {n} appends, node {c/n*1e6:.1f} us/append, harness {b/n*1e6:.1f} us/append')
