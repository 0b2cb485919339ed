"""Exercised by tests/host_programs.rs: /usr/bin/python3 runs this natively
and in the sandbox; the output must be identical. Deterministic only."""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading


def section(name):
    print(f"== {name}", flush=True)


section("json")
doc = {"name": "rvisor", "tags": ["sandbox", "kernel"], "nested": {"n": 3, "pi": 3.25, "ok": True}}
text = json.dumps(doc, sort_keys=True)
print(text)
back = json.loads(text)
print("roundtrip equal:", back == doc)
print("pretty lines:", len(json.dumps(doc, indent=2).splitlines()))

section("hashlib")
data = b"the quick brown fox jumps over the lazy dog" * 1000
for algo in ("md5", "sha1", "sha256", "sha512", "blake2b"):
    print(algo, hashlib.new(algo, data).hexdigest()[:32])

section("threading")
lock = threading.Lock()
counter = 0
results = {}


def worker(idx):
    global counter
    local = 0
    for i in range(20000):
        with lock:
            counter += 1
        local += i * idx
    results[idx] = local


threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("counter:", counter)
print("results:", [results[i] for i in sorted(results)])

event = threading.Event()
box = []


def producer():
    box.append("produced")
    event.set()


threading.Thread(target=producer).start()
print("event set:", event.wait(30), box)

section("subprocess")
out = subprocess.run(["/bin/busybox", "echo", "hi"], capture_output=True, check=True)
print("busybox echo:", repr(out.stdout), "rc", out.returncode)
proc = subprocess.run(["/bin/busybox", "sh", "-c", "read x; echo got $x; exit 3"],
                      input=b"data\n", capture_output=True)
print("sh:", repr(proc.stdout), "rc", proc.returncode)
proc = subprocess.run(["/bin/busybox", "sh", "-c", "kill -9 $$"])
print("killed child rc", proc.returncode)
try:
    subprocess.run(["/nonexistent/prog"])
except FileNotFoundError as e:
    print("missing program:", type(e).__name__, e.errno)
p = subprocess.Popen(["/bin/busybox", "tr", "a-z", "A-Z"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
o, _ = p.communicate(b"pipe me")
print("popen:", o, p.returncode)

section("files")
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "f.txt")
    with open(path, "w") as f:
        f.write("line\n" * 100)
    st = os.stat(path)
    print("size", st.st_size, "lines", sum(1 for _ in open(path)))
    os.rename(path, path + ".moved")
    print("listing", sorted(os.listdir(d)))
print("cwd is repo:", os.path.isfile(os.path.join(os.getcwd(), "Cargo.toml")))
print("argv:", sys.argv[1:])
sys.exit(0)
