"""Subprocess worker for the reader memory test: `gguf_rss_worker.py PATH BOUND` caps the
address space at what it uses now plus BOUND bytes (so an allocation the reader would never
touch counts too), opens PATH (no model check) and prints a JSON line with the growth of peak
RSS (ru_maxrss) over the open and the error, if any. RSS and the address space are what count:
the reader's allocations are C++, invisible to tracemalloc."""
import json
import resource
import sys

from unigemma import _core

path, bound = sys.argv[1], int(sys.argv[2])
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + bound, resource.RLIM_INFINITY))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
err = None
try:
    _core.GGUFFile(path, validate_model=False)
except _core.GGUFError as e:
    err = str(e)
except MemoryError as e:  # the cap was hit: the test fails on it
    err = f"MemoryError: {e}"
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_growth": (after - before) * 1024, "error": err}))
