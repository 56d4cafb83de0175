# One job's processes in a persistent container, found by the group id the job runs with (see
# group.rs): the kernel keeps it on every process the job starts, whatever session, process group,
# parent or environment that process has, and the job cannot drop it.
#
#   sh -c <this> sh kill GID         cancel or deadline: run by the job's user outside GID; exits 0
#                                    when no process of the job remains, 1 when one outlived SIGKILL
#   sh -c <this> sh run GID CMD ...  a job: runs CMD, then kills what CMD left behind (background
#                                    processes, daemons); exits with CMD's status
#
# No API kills an exec, and an exec'd process outlives the connection that started it, so this has
# to happen in here. SIGTERM first (Claude Code and the SDK runner abort cleanly on it), SIGKILL for
# whatever is left after about a second (a shell that ignores SIGTERM passes that on to every child
# it starts). Only busybox is assumed: sh and sleep.

# The job's live processes, in $pids: every process with $gid as its real, effective, saved or
# file-system group id, but zombies, PID 1 and this shell. Shell builtins only, so this shell has
# no child while it looks (in `run` mode its children would carry $gid too) and a look costs no
# process start, which a job in a persistent container pays at every end.
job_pids() {
  pids=
  for f in /proc/[0-9]*; do
    p=${f#/proc/}
    # Never PID 1 (the container's init, never a job's): killing it would stop the container.
    { [ "$p" = "$$" ] || [ "$p" = 1 ]; } && continue
    # The quick test of `run` mode, where $gid is this shell's own group and its uid is not root:
    # the kernel gives a process's /proc directory its effective uid and gid unless it made
    # itself undumpable (then root's). Our uid with another group is another job's process or the
    # container's own: a job's process cannot change its effective group (no CAP_SETGID, and
    # no-new-privileges ignores set-group-id files). Everything else is read in full.
    [ -n "$quick" ] && [ -O "$f" ] && ! [ -G "$f" ] && continue
    s=
    m=
    # A process that exits meanwhile takes its file along: then there is nothing to read.
    while read -r k a b c d _; do
      case $k in
      State:) s=$a ;;
      Gid:)
        { [ "$a" = "$gid" ] || [ "$b" = "$gid" ] || [ "$c" = "$gid" ] || [ "$d" = "$gid" ]; } && m=1
        break
        ;;
      esac
    done 2>/dev/null <"$f/status"
    [ -n "$m" ] && [ "$s" != Z ] && [ "$s" != X ] && pids="$pids $p"
  done
}

# The time since boot in hundredths of a second, in $t (busybox's date has no finer unit than
# seconds); the grace below is measured in time, not in rounds, which a busy machine stretches.
now() {
  read -r t _ </proc/uptime
  t=${t%.*}${t#*.}
}

kill_job() {
  job_pids
  [ -z "$pids" ] && return 0
  kill -TERM $pids 2>/dev/null
  now
  until=$((t + 100))
  while :; do
    sleep 0.05
    job_pids
    [ -z "$pids" ] && return 0
    now
    [ "$t" -ge "$until" ] && break
  done
  # Freeze them all before killing any: killed one by one, a parent whose child died first could
  # run its next command (print a line, start another process) before its own turn came. A process
  # forked since the last look is found by the next one, and SIGKILL takes effect only when a
  # process next runs (not at once on a busy machine): look again until none is left (or a zombie).
  until=$((t + 100))
  while :; do
    kill -STOP $pids 2>/dev/null
    kill -KILL $pids 2>/dev/null
    sleep 0.02
    job_pids
    [ -z "$pids" ] && return 0
    now
    [ "$t" -ge "$until" ] && break
  done
  echo "herdctl: processes $pids of the job outlived SIGKILL" >&2
  return 1
}

case $1 in
kill)
  gid=$2
  kill_job
  ;;
run)
  # A job that signals its own process group (`trap 'kill 0' EXIT` is common) must not take this
  # shell with it. A subshell resets caught signals to their defaults, so CMD sees them as ever.
  trap : TERM INT HUP
  # CMD runs as the engine would run it: `exec` finds a program, never a builtin or function, and
  # no variable is set before it runs (one that came from the environment would reach CMD changed).
  (shift 2 && exec "$@")
  status=$?
  gid=$2
  while read -r k a _; do [ "$k" = Uid: ] && break; done </proc/$$/status
  [ "$a" != 0 ] && quick=1
  kill_job
  exit $status
  ;;
*)
  echo "herdctl: unknown mode $1" >&2
  exit 2
  ;;
esac
