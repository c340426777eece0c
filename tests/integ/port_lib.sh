# tests/integ/port_lib.sh - free_port, sourced by the integration tests and the
# benchmarks that start servers on ports they choose (not executable: tests/run.sh
# runs only executable scripts).
#
# free_port prints a port that nothing listens on now, chosen at random BELOW the
# kernel's ephemeral range (net.ipv4.ip_local_port_range). A port the kernel picked
# (bind to port 0) and gave back is free now, but it stays in the range the kernel
# picks from for every listener on port 0 and every outgoing connection, so one of
# those may take it before the server meant for it binds it: CI once saw a test's
# EPMD port taken by a node's distribution listener. The kernel never picks below
# the range, so there only another test's explicit choice could collide, and the
# bind check here sees that.
free_port() {
    python3 - <<'PY'
import random, socket
try:
    low = int(open('/proc/sys/net/ipv4/ip_local_port_range').read().split()[0])
except (OSError, ValueError):
    low = 32768
top = max(low, 11000)
for _ in range(500):
    p = random.randrange(10000, top)
    s = socket.socket()
    try:
        s.bind(('127.0.0.1', p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
PY
}
