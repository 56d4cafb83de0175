# Kills one job's processes inside a container: run as `sh -c <this> sh <job id>` by the job's user.
# No API kills an exec, and an exec'd process outlives the connection that started it, so cancel
# has to happen in here. SIGTERM first (Claude Code and the SDK runner abort cleanly on it), SIGKILL
# for whatever is left after about a second (a shell that ignores SIGTERM passes that on to every
# child it starts). Exits 0 when no process of the job remains, 1 when one outlived SIGKILL.
marker="HERDCTL_JOB_ID=$1"
# The job's processes: those whose environment carries the marker, every process in their sessions
# (an orphaned grandchild keeps its session), and all descendants of either (a child that cleared its
# environment and left the session is still found through its parent).
job_pids() {
  seeds=
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$$" ] && continue
    tr '\0' '\n' <"$d/environ" 2>/dev/null | grep -qxF "$marker" && seeds="$seeds $p"
  done
  [ -z "$seeds" ] && return 0
  # "pid ppid sid" of every process; comm may hold spaces and parentheses, so cut at the last ")".
  sed -n 's/^\([0-9]*\) (.*) . \([0-9]*\) [0-9]* \([0-9]*\) .*/\1 \2 \3/p' /proc/[0-9]*/stat 2>/dev/null |
    awk -v seeds="$seeds" -v self="$$" '
      BEGIN { n = split(seeds, s, " "); for (i = 1; i <= n; i++) job[s[i]] = 1 }
      { parent[$1] = $2; sid[$1] = $3 }
      END {
        for (p in job) if ((p in sid) && (sid[p] in job)) sess[sid[p]] = 1
        for (p in sid) if ((sid[p] in sess) && p != self) job[p] = 1
        do { grew = 0; for (p in parent) if (!(p in job) && (parent[p] in job)) { job[p] = 1; grew = 1 } } while (grew)
        for (p in job) if ((p in parent) && p != self && p != 1) print p
      }'
}
pids=$(job_pids)
[ -z "$pids" ] && exit 0
kill -TERM $pids 2>/dev/null
i=0
while [ $i -lt 20 ]; do
  sleep 0.05
  pids=$(job_pids)
  [ -z "$pids" ] && exit 0
  i=$((i + 1))
done
# Freeze them all first: killed one by one, a parent whose child died first could still run its
# next command (print a line, start another process) before its own turn came.
kill -STOP $pids 2>/dev/null
kill -KILL $pids 2>/dev/null
# SIGKILL takes effect when the process next runs, which on a busy machine is not at once: wait
# until each one is gone or a zombie, so that the caller may count on it (up to about a second).
i=0
while [ $i -lt 20 ]; do
  alive=
  for p in $pids; do
    s=$(sed -n 's/^[0-9]* (.*) \(.\) .*/\1/p' "/proc/$p/stat" 2>/dev/null)
    [ -n "$s" ] && [ "$s" != Z ] && alive=1
  done
  [ -z "$alive" ] && exit 0
  sleep 0.05
  i=$((i + 1))
done
exit 1
