# The CPU time (user, system) a command uses, from getrusage(RUSAGE_CHILDREN), and its last
# output: how benches/RESULTS.md (issue #24) measured bench against sockperf.
# Usage: python3 benches/cpu_of.py COMMAND [ARG...]
import resource, subprocess, sys, time
t = time.time()
p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(p.stdout[-1500:])
print(f"CPU user {r.ru_utime:.2f} s, system {r.ru_stime:.2f} s, total {r.ru_utime + r.ru_stime:.2f} s, wall {time.time() - t:.2f} s")
