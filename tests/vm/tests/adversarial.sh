#!/bin/bash
# The hostile catalogue (issue 20, deliverable 1): the initiator against an adversarial
# userspace iSER target (tests/vm/adv/target.py, rdma-core's pyverbs) that follows one
# scenario file per case (tests/vm/adv/*.scn): malformed PDUs, bad tags, lying responses,
# Data-In/R2T, Send with Invalidate games, RDMA outside the advertised buffers, NOP-In and
# Async floods, Rejects, login games, TMF and CmdSN-window abuse, disconnects. Each scenario
# states its expected outcome in its header (`# expect: login=ok io=ok conn_error=yes ...`,
# tests/vm/adv/README); this test runs it and prints one line per scenario:
#   scenario NAME: expected ..., saw ...
# and fails on any mismatch (`# xfail: why` marks a known, reported failure: printed as XFAIL,
# not counted). After every scenario: no splat in the kernel log, no session left, ours still
# loaded; at the end ours logs in to a well-behaved scenario again and unloads.
#
# SCENARIOS=REGEX selects scenarios by name; `# cost: long` ones run only with ISER_LONG=1 or
# when SCENARIOS names them. ISER_IMPL=c runs the catalogue against the in-tree C driver
# (the dmesg/counter expectations, which name ours' log lines and debugfs counters, are then
# not checked).
. "$(dirname "$0")/../lib.sh"
ADV=$ISER_TOP/tests/vm/adv
PY=/usr/bin/python3
APORT=${APORT:-3262}
AIQN=iqn.2026-12.org.iser-rs.test:adv
AP=$IP:$APORT
RES=${ISER_RESULTS:-/tmp}/adv
IMPL=${ISER_IMPL:-rs}
SEL=${SCENARIOS:-.}
SCSI_TMO=${SCSI_TMO:-5}
mkdir -p "$RES"
[ -x "$PY" ] && "$PY" -c 'import pyverbs.cmid' 2>/dev/null || skip "no $PY with pyverbs (python3-pyverbs)"

rdma_up rxe || fail "rxe"
modprobe -a rdma_ucm ib_uverbs || fail "rdma_ucm/ib_uverbs"
load_initiator "$IMPL" || fail "load ib_iser ($IMPL)"
iscsid_start
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug 2>/dev/null

# One node record for every scenario, with short timeouts (each iscsiadm costs about a second).
iscsiadm -m node -T "$AIQN" -p "$AP" -I iser -o new >/dev/null || fail "node record"
nupd() { iscsiadm -m node -T "$AIQN" -p "$AP" -I iser -o update -n "$1" -v "$2" || fail "node $1"; }
nupd node.session.timeo.replacement_timeout 10
# The login timeout covers the connection and the login exchange: 5 s was too short for the
# first login of a cold VM (the target's first Login Response came 4.5 s after the connect
# request, 2026-12-04) and failed 00-baseline; the scenarios that never answer take 10 s more.
nupd 'node.conn[0].timeo.login_timeout' 15
nupd 'node.conn[0].timeo.logout_timeout' 5
nupd 'node.conn[0].timeo.noop_out_interval' 5
nupd 'node.conn[0].timeo.noop_out_timeout' 5
nupd node.session.err_timeo.abort_timeout 3
nupd node.session.err_timeo.lu_reset_timeout 5
nupd node.session.err_timeo.tgt_reset_timeout 5
nupd node.session.initial_login_retry_max 1

head -c 16384 /dev/urandom >/tmp/adv-pat
FIFO=/tmp/adv-fifo; rm -f "$FIFO"; mkfifo "$FIFO"
# nap S: sleep without an exec (read -t on a FIFO nobody writes).
exec 9<>"$FIFO"
nap() { read -r -t "$1" -u 9; }
mism=0 xfails=0 total=0 failed_names=()

# actions_wait: until no fired rule's or timer's actions are still running in the target
# (the third field of its LOG.st, $tlog.st), at most 30 s; logged if they still run then.
actions_wait() {
  local _f _e r end=$((SECONDS + 30))
  while [ $SECONDS -lt $end ]; do
    r=0
    [ -r "$tlog.st" ] && read -r _f _e r <"$tlog.st"
    [ "${r:-0}" = 0 ] && return 0
    nap 0.2
  done
  log "$name: the target's rule actions still run after 30 s; observed anyway"
}

# Few execs per scenario (each costs up to a second or two in the debug VM): bash builtins
# and sysfs globs wherever they do.

# hdr FILE: the scenario's header fields (expect, run, xfail, want_dmesg, cost) and whether it
# has rules (has_rules) or ends the target (has_exit).
hdr() {
  local line
  expect="" expect_c="" run="" xfail="" want_dmesg="" cost="" has_rules="" has_exit="" fresh="" skip_c=""
  while IFS= read -r line; do
    case $line in
      '# expect: '*) expect+="${line#'# expect: '} " ;;
      '# expect-c: '*) line=${line#'# expect-c: '}; expect_c+="${line%%(*} " ;;
      '# run: '*) [ -n "$run" ] || run=${line#'# run: '} ;;
      '# xfail: '*) xfail=${line#'# xfail: '} ;;
      '# skip-c: '*) skip_c=${line#'# skip-c: '} ;;
      '# expect-dmesg: '*) want_dmesg=${line#'# expect-dmesg: '} ;;
      '# cost: '*) cost=${line#'# cost: '} ;;
      on\ *|after\ *) has_rules=1 ;;
    esac
    case $line in
      cm\ *|login_key\ *|'on login'*|text_*|window\ *|'# session: fresh'*) fresh=1 ;;
    esac
    case $line in \#*) ;; *': exit'*|*'; exit'*) has_exit=1 ;; esac
  done <"$1"
  run=${run:-read}
  [[ $run == discovery* ]] && fresh=1
  # The C driver: `# expect-c:` keys replace the same keys of `# expect:`.
  if [ "$IMPL" = c ] && [ -n "$expect_c" ]; then
    local kv e2=""
    for kv in $expect; do [[ " $expect_c " == *" ${kv%%=*}="* ]] || e2+="$kv "; done
    expect="$e2$expect_c"
  fi
  return 0
}

# section MARK: the kernel log since the line ending in MARK, in sec_lines.
section() {
  local all i
  mapfile -t all < <(dmesg)
  for ((i = ${#all[@]} - 1; i > 0; i--)); do [[ ${all[i]} == *"$1" ]] && break; done
  sec_lines=("${all[@]:i}")
}
runno=0
KERN_RE="ib_iser|iscsi|connection|session"

# sessions_left: the number of iSCSI sessions, in nsess.
sessions_left() {
  local x; nsess=0
  for x in /sys/class/iscsi_session/session*; do [ -e "$x" ] && nsess=$((nsess + 1)); done
}

# disk: the SCSI disk of the session (in dev), waiting up to 20 s.
disk() {
  local end=$((SECONDS + 20)) b
  while [ $SECONDS -lt $end ]; do
    for b in /sys/class/iscsi_session/session*/device/target*/*/block/*; do
      [ -e "$b" ] && [ -b "/dev/${b##*/}" ] && { dev=${b##*/}; return 0; }
    done
    nap 0.2
  done
  return 1
}

# io_rc RC: ok, eio or hang (timeout's 124), in rc_s.
io_rc() { case $1 in 0) rc_s=ok ;; 124) rc_s=hang ;; *) rc_s=eio ;; esac; }

# match VALUE ALTERNATIVES: ALTERNATIVES is "a|b|any".
match() { local a; IFS='|' read -ra alts <<<"$2"; for a in "${alts[@]}"; do [ "$a" = any ] || [ "$a" = "$1" ] && return 0; done; return 1; }

# The target runs in serve mode: one process for the catalogue (its start costs seconds in the
# debug VM); SIGHUP switches it to the scenario and log named in $CTL. A target that exited
# (the `exit` action) or does not answer is started again.
CTL=/tmp/adv-ctl
tpid=""
stop_target() {
  [ -n "$tpid" ] || return 0
  kill "$tpid" 2>/dev/null
  local w; for w in $(seq 50); do kill -0 "$tpid" 2>/dev/null || break; nap 0.1; done
  kill -9 "$tpid" 2>/dev/null; wait "$tpid" 2>/dev/null
  tpid=""
}
start_target() {
  stop_target
  setsid "$PY" "$ADV/target.py" --scenario "$1" --log "$2" --control "$CTL" --ip "$IP" \
    --port "$APORT" --iqn "$AIQN" --timeout "${TARGET_TIMEOUT:-300}" >>"$RES/target.out" 2>&1 &
  tpid=$!
  local end=$((SECONDS + 60))
  until [[ $(<"$2") == *listening* ]]; do
    [ $SECONDS -lt $end ] && kill -0 "$tpid" 2>/dev/null || { stop_target; return 1; }
    nap 0.1
  done 2>/dev/null
  return 0
}
# load_scenario FILE LOG
load_scenario() {
  if [ -n "$tpid" ] && kill -0 "$tpid" 2>/dev/null; then
    printf '%s %s\n' "$1" "$2" >"$CTL"
    kill -HUP "$tpid"
    local end=$((SECONDS + 15))
    until [[ $(<"$2") == *loaded* ]]; do
      [ $SECONDS -lt $end ] || break
      nap 0.1
    done 2>/dev/null
    [[ $(<"$2") == *loaded* ]] 2>/dev/null && return 0
    log "the target did not switch to $(basename "$1"): restarting it"
  fi
  start_target "$@"
}

# Sessions. A scenario that only misbehaves in full feature phase (rules on commands,
# NOP-Outs, TMFs, timers) runs on the shared session, logged in once and kept while it works
# (a login, its SCSI scan and a logout cost some 15 s in the debug VM); one that plays with
# the CM, the login or discovery (`cm`, `login_key`, `on login`, `text_*`, `window`, run
# discovery, or `# session: fresh`) gets a session of its own.
sess_dev=""
sess_ok() {
  local f s=""
  for f in /sys/class/iscsi_session/session*/state; do [ -r "$f" ] && read -r s <"$f"; done
  [ "$s" = LOGGED_IN ] || return 1
  for f in /sys/class/iscsi_connection/connection*/state; do [ -r "$f" ] && read -r s <"$f"; done
  [ "$s" = up ]
}
# recovered DEV T: the session is logged in and a direct read completes, within T s.
recovered() {
  local end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do
    sess_ok && timeout 20 dd if="/dev/$1" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null && return 0
    nap 0.5
  done
  return 1
}
# do_login: login and disk (in dev); login is ok, fail or nodisk.
do_login() {
  dev="" login=fail
  timeout 60 iscsiadm -m node -T "$AIQN" -p "$AP" -I iser --login >>"$RES/$name.login" 2>&1 || return 1
  login=nodisk
  disk || return 1
  login=ok
  echo "$SCSI_TMO" >"/sys/block/$dev/device/timeout"
}
do_logout() {
  sessions_left
  [ "$nsess" = 0 ] || marked timeout 60 iscsiadm -m node -T "$AIQN" -p "$AP" --logout >/dev/null 2>&1
  sess_dev=""
}

run_scenario() {
  local f=$1 name expect expect_c run xfail want_dmesg cost has_rules has_exit fresh skip_c k v saw=() exp=() bad=() i l r
  local login=fail io="" data="" disc="" ntargets="" recover="" spid=""
  name=${f##*/}; name=${name%.scn}
  hdr "$f"
  local tlog=$RES/$name.log
  rm -f "$tlog" "$tlog.st" "$RES/$name.stats"
  runno=$((runno + 1))
  echo "iser-test: adv begin $runno $name" >/dev/kmsg
  if [ -n "$fresh" ] && [ -n "$sess_dev" ]; then do_logout; fi
  load_scenario "$f" "$tlog" || { log "scenario $name: the target did not take it: $(tail -n 5 "$RES/target.out")"; mism=$((mism + 1)); failed_names+=("$name"); return; }
  # debugfs counters of ours, sampled with builtins while the scenario runs: each pass (a
  # "#pass" line) reads every connection's and those of the connections that ended, so a
  # count survives its connection's teardown; the judgement compares each pass's sum with
  # the first's.
  if [ "$IMPL" = rs ] && [[ " $expect " == *" counter="* ]]; then
    # Builtins only (a sleep exec 20 times a second would cost the VM): read -t on a FIFO.
    ( while :; do echo "#pass"; for s in /sys/kernel/debug/iser/*/stats /sys/kernel/debug/iser/ended/counters; do [ -r "$s" ] && { read -r -d '' x <"$s"; printf '%s\n' "$x"; }; done; read -r -t 0.05 -u 9; done ) >>"$RES/$name.stats" 2>/dev/null &
    spid=$!
  fi
  if [[ $run == discovery* ]]; then
    timeout 60 iscsiadm -m discovery -t st -p "$AP" -I iser -o nonpersistent >"$RES/$name.disc" 2>&1
    [ $? = 0 ] && disc=ok || disc=fail
    ntargets=0
    while IFS= read -r l; do [[ $l == *"$AIQN"* ]] && ntargets=$((ntargets + 1)); done <"$RES/$name.disc"
  elif [ -z "$fresh" ] && [ -n "$sess_dev" ] && sess_ok; then
    login=ok dev=$sess_dev
  else
    [ -z "$sess_dev" ] || do_logout
    do_login
    [ -n "$fresh" ] || [ "$login" != ok ] || sess_dev=$dev
  fi
  [ "$login" = ok ] && kill -USR1 "$tpid" 2>/dev/null   # the scenario's timers start now
  if [ $login = ok ]; then
    case $run in
      read|reads:*|idle:*|read-idle:*)
        local n=1
        case $run in reads:*) n=${run#reads:} ;; idle:*) sleep "${run#idle:}" ;; read-idle:*) n=2 ;; esac
        io=ok
        for i in $(seq "$n"); do
          timeout 90 dd if="/dev/$dev" of=/tmp/adv-rd bs=16k count=1 skip=256 iflag=direct 2>>"$RES/$name.io"
          io_rc $?; [ "$rc_s" = ok ] || io=$rc_s
          [ "$i" = 1 ] && [[ $run == read-idle:* ]] && sleep "${run#read-idle:}"
        done
        ;;
      write)
        timeout 90 dd if=/tmp/adv-pat of="/dev/$dev" bs=16k count=1 seek=256 oflag=direct 2>>"$RES/$name.io"
        io_rc $?; io=$rc_s
        ;;
      verify)
        timeout 90 dd if=/tmp/adv-pat of="/dev/$dev" bs=16k count=1 seek=256 oflag=direct 2>>"$RES/$name.io"
        io_rc $?; io=$rc_s
        timeout 90 dd if="/dev/$dev" of=/tmp/adv-rd bs=16k count=1 skip=256 iflag=direct 2>>"$RES/$name.io"
        io_rc $?; [ "$rc_s" = ok ] || io=$rc_s
        cmp -s /tmp/adv-pat /tmp/adv-rd && data=ok || data=bad
        ;;
      fio:*)
        # fio:ARGS (commas for spaces): a verified fio job at 4 MiB.
        local fa=${run#fio:}
        timeout 180 fio --name=adv --filename="/dev/$dev" --allow_file_create=0 --direct=1 --ioengine=libaio --verify=crc32c \
          --do_verify=1 --verify_fatal=1 --verify_state_save=0 --offset=4M ${fa//,/ } >"$RES/$name.fio" 2>&1
        io_rc $?; io=$rc_s; [ "$io" = ok ] && data=ok || data=bad
        ;;
      sgread)
        # One SG_IO READ of the same 16 KiB (READ(10), LBA 8192 of 512-byte blocks) with a
        # 5 s timeout: passthrough commands are never retried (scsi_ioctl.c: allowed = 0), so
        # after an abort no new command reuses the aborted one's registration.
        timeout 90 sg_raw -r 16384 -t 5 "/dev/$dev" 28 00 00 00 20 00 00 00 20 00 >/dev/null 2>>"$RES/$name.io"
        io_rc $?; io=$rc_s
        ;;
      none) io=ok ;;
    esac
    # Rules whose actions go on after the run's I/O ended (a sleep among them, e.g. an
    # RDMA write 3 s after an answer): the observations wait until the target says they
    # have all ended (LOG.st's third field), at most 30 s.
    actions_wait
  fi
  # Observations. A shared session must still work (or recover) for the next scenario.
  local wait_s=${RECOVER_S:-40}
  [[ " $expect " == *" recover=no "* ]] && wait_s=5
  if [[ " $expect " == *" recover="* ]] || { [ -z "$fresh" ] && [ -n "$sess_dev" ]; }; then
    if [ -n "$dev" ] && recovered "$dev" "$wait_s"; then recover=yes; else recover=no; fi
  fi
  [ -n "$spid" ] && { kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; }
  local broken=""
  if [ -n "$fresh" ] || [ "$recover" = no ] || [ -z "$sess_dev" ]; then
    [ -z "$fresh" ] && [ -n "$sess_dev" ] && [ "$recover" = no ] && [[ " $expect " != *" recover=no "* ]] && broken=1
    do_logout
  fi
  echo "iser-test: adv end $runno $name" >/dev/kmsg
  local sec_lines=() conn_error=no inl=0 splat=() dmesg_hit="" kern=()
  section "iser-test: adv begin $runno $name"
  printf '%s\n' "${sec_lines[@]}" >"$RES/$name.dmesg"
  for l in "${sec_lines[@]}"; do
    case $l in
      *'iser-test: logout begin'*) inl=1; continue ;;
      *'iser-test: logout end'*) inl=0; continue ;;
    esac
    [ $inl = 0 ] && [[ $l =~ $CONN_ERR_RE ]] && conn_error=yes
    [[ $l =~ $SPLAT_RE ]] && splat+=("$l")
    [ -n "$want_dmesg" ] && [[ $l =~ $want_dmesg ]] && dmesg_hit=1
    [[ $l =~ $KERN_RE ]] && [[ $l != *iser-test* ]] && kern+=("$l")
  done
  local fired=0 terr=0
  [ -r "$tlog.st" ] && read -r fired terr _ <"$tlog.st"
  # Compare.
  for kv in $expect; do
    k=${kv%%=*} v=${kv#*=}
    local s=""
    case $k in
      login) s=$login ;;
      io) s=${io:-none} ;;
      data) s=${data:-none} ;;
      conn_error) s=$conn_error ;;
      recover) s=${recover:-none} ;;
      discovery) s=${disc:-none} ;;
      targets) s=${ntargets:-none} ;;
      counter)
        [ "$IMPL" = rs ] || continue
        # Moved: a pass whose sum over the connections (live and ended) exceeds the
        # first pass's (the last pass may be cut short by the kill: not counted).
        s=$(awk -v c="$v" '
          $1 == "#pass" { if (p > 1 && sum > base) moved = 1; if (p == 1) base = sum; p++; sum = 0; next }
          $1 == c { sum += $2 }
          END { print (moved ? c : "no-" c) }' "$RES/$name.stats" 2>/dev/null) ;;
      *) s="?" ;;
    esac
    exp+=("$kv"); saw+=("$k=$s")
    match "$s" "$v" || bad+=("$k")
  done
  if [ -n "$want_dmesg" ] && [ "$IMPL" = rs ]; then
    exp+=("dmesg~'$want_dmesg'")
    if [ -n "$dmesg_hit" ]; then saw+=("dmesg=match"); else saw+=("dmesg=nomatch"); bad+=(dmesg); fi
  fi
  if [ -n "$has_rules" ]; then
    exp+=("fired>0"); saw+=("fired=$fired")
    [ "$fired" -gt 0 ] || bad+=(fired)
  fi
  [ -z "$broken" ] || { bad+=(session_broken); saw+=("shared-session-broken"); }
  [ ${#splat[@]} = 0 ] || { bad+=(splat); saw+=("SPLAT"); }
  if [ -z "$sess_dev" ]; then
    sessions_left; [ "$nsess" = 0 ] || { bad+=(session_left); saw+=("session-left"); }
  fi
  iser_loaded || { bad+=(unloaded); saw+=("ib_iser-gone"); }
  [ "$terr" = 0 ] || saw+=("target-error")
  if ! kill -0 "$tpid" 2>/dev/null && [ -z "$has_exit" ]; then
    saw+=("target-died"); bad+=(target)
    log "    target output: $(tail -n 3 "$RES/target.out" | tr '\n' ' ')"
  fi
  local verdict=ok
  if [ ${#bad[@]} -gt 0 ]; then
    if [ -n "$xfail" ] && [ ${#splat[@]} = 0 ]; then verdict="XFAIL ($xfail)"; xfails=$((xfails + 1))
    else verdict="MISMATCH (${bad[*]})"; mism=$((mism + 1)); failed_names+=("$name"); fi
  elif [ -n "$xfail" ]; then
    verdict="XPASS (marked xfail: $xfail)"
  fi
  total=$((total + 1))
  log "scenario $name: expected ${exp[*]}, saw ${saw[*]}: $verdict"
  for l in "${splat[@]:0:5}"; do log "    $l"; done
  if [ ${#bad[@]} -gt 0 ]; then
    for l in "${kern[@]: -6}"; do log "    kernel: $l"; done
  fi
}

long=${ISER_LONG:-}
t_all=$SECONDS
# 00-baseline first, then the scenarios on the shared session, then those with sessions of
# their own.
shared=() own=() skipped_c=0
for f in "$ADV"/*.scn; do
  name=${f##*/}; name=${name%.scn}
  [[ $name =~ $SEL ]] || continue
  hdr "$f"
  [ "$cost" = long ] && [ -z "$long" ] && [ "$SEL" = . ] && continue
  # `# skip-c: WHY`: a scenario that brings the C driver's kernel down; not run with it.
  if [ "$IMPL" = c ] && [ -n "$skip_c" ]; then
    log "scenario $name: SKIP with the C driver: $skip_c"; skipped_c=$((skipped_c + 1)); continue
  fi
  if [ "$name" = 00-baseline ]; then shared=("$f" "${shared[@]}")
  elif [ -n "$fresh" ]; then own+=("$f"); else shared+=("$f"); fi
done
for f in "${shared[@]}" "${own[@]}"; do
  t0=$SECONDS
  run_scenario "$f"
  log "  ($((SECONDS - t0)) s)"
done
# Ours is still usable: a well-behaved scenario logs in, writes and reads back.
if [ "$SEL" = . ] || [[ 00-baseline =~ $SEL ]]; then
  do_logout
  run_scenario "$ADV/00-baseline.scn"
fi
do_logout
sessions_left; [ "$nsess" = 0 ] || { log "sessions left: $(iscsiadm -m session 2>&1)"; mism=$((mism + 1)); }
stop_target
iscsiadm -m node -T "$AIQN" -p "$AP" -o delete >/dev/null 2>&1
log "adversarial: $total scenarios, $mism mismatches, $xfails known failures (xfail), $((SECONDS - t_all)) s$([ "$skipped_c" = 0 ] || echo ", $skipped_c not run with the C driver (# skip-c)")"
[ ${#failed_names[@]} -eq 0 ] || log "mismatched: ${failed_names[*]}"
iscsid_stop
unload_initiator || fail "ib_iser did not unload after the catalogue"
[ $mism = 0 ] || fail "$mism scenario(s) did not behave as expected"
exit 0
