#!/usr/bin/env bash
# The metrics lab's scenarios (puts, ranges, fsync delay, quota, compaction, defrag) on 3-member clusters of
# ferrokv and, with --etcd, etcd: see scripts/lab.py for what each does and prints.
exec python3 "$(dirname "$0")/lab.py" "$@"
