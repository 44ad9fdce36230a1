"""Paced latency of single requests: `latency.py PORT HOST [N] [PAUSE_MS]` prints "p50_us p99_us".

Requests go one at a time on a keep-alive connection with a pause between
them, so a server that prepares sandboxes ahead of demand has time to, as it
would between real cold starts; a back-to-back load test measures throughput
instead. Both servers measured this way pay the same client overhead.
"""

import http.client
import sys
import time

port, host = int(sys.argv[1]), sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 300
pause = (float(sys.argv[4]) if len(sys.argv) > 4 else 10.0) / 1000

conn = http.client.HTTPConnection("127.0.0.1", port)
samples = []
for _ in range(count + 10):
    time.sleep(pause)
    started = time.perf_counter()
    conn.request("GET", "/", headers={"Host": host})
    response = conn.getresponse()
    response.read()
    samples.append(time.perf_counter() - started)
    if response.status != 200:
        sys.exit(f"GET / answered {response.status}")
samples = sorted(samples[10:])
print(samples[len(samples) // 2] * 1e6, samples[int(len(samples) * 0.99)] * 1e6)
