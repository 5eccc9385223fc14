# An allocation-heavy Python workload for tests/preload.rs: dicts, lists,
# strings, bytes, JSON, sorting, a Counter, and threads, each result
# checked here and printed; the driver compares the printout with a run
# of the same interpreter without LD_PRELOAD and with known values.
import collections
import json
import random
import threading

rng = random.Random(12345)

# A dict of 200k entries holding lists and strings; delete half; rebuild.
d = {}
for i in range(200000):
    d["key%d" % i] = ["v" * (i % 50), i, str(i * 7)]
total = sum(len(v[0]) + v[1] for v in d.values())
assert total == sum(i % 50 + i for i in range(200000))
for i in range(0, 200000, 2):
    del d["key%d" % i]
assert len(d) == 100000
print("dict", total, len(d))

# JSON round trip of the whole dict.
s = json.dumps(d)
d2 = json.loads(s)
assert d2 == d
print("json", len(s))

# 100k random strings, sorted; a Counter of prefixes.
words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 30)))
         for _ in range(100000)]
words.sort()
assert all(words[i] <= words[i + 1] for i in range(len(words) - 1))
c = collections.Counter(w[:2] for w in words)
print("words", len(words), sum(c.values()), len(c))

# String building and bytes.
parts = []
for i in range(100000):
    parts.append("%d:%s;" % (i, hex(i)))
joined = "".join(parts)
b = joined.encode() * 3
assert b.count(b";") == 300000
print("strings", len(joined), len(b))

# Threads allocating at once, results handed back to the main thread.
results = [None] * 4

def worker(k):
    local = [bytes(range(k * 10 % 256)) * (j % 40) for j in range(30000)]
    m = {j: [j] * (j % 10) for j in range(30000)}
    results[k] = sum(len(x) for x in local) + sum(len(v) for v in m.values())

threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("threads", results)

# Drop everything and build once more (reuse of freed memory).
del d, d2, s, words, parts, joined, b
again = [[i] * 10 for i in range(100000)]
print("again", sum(len(x) for x in again))
print("python ok")
