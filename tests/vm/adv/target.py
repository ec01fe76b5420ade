#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""An adversarial iSER target (RFC 7145) for the VM suite: userspace, rdma-core's pyverbs.

    /usr/bin/python3 target.py --scenario FILE.scn --log FILE [--ip 10.77.0.1] [--port 3262]
                               [--timeout 120] [--iqn IQN] [--lun-mb 32]
    /usr/bin/python3 target.py --selftest     # offline checks of the PDU logic (no RDMA)
    ... --control FILE                        # serve mode: SIGHUP loads "SCENARIO LOG" from FILE

The code, by concern: adv_pdu.py (constants, PDU and text-key helpers), adv_log.py (the
action log), adv_scenario.py (the scenario language), adv_state.py (LUN, commands, sessions),
adv_conn.py (one connection's PDU handling and the rules), adv_rdma.py (pyverbs: CM, QPs,
CQ, the event loop), adv_selftest.py (--selftest); this file is the command line.

It listens with rdma_cm, accepts iSER connections (CM private data), logs the initiator in
(Login phase; SendTargets discovery too) and serves one LUN from memory as a small but
correct SCSI target: READ/WRITE move data by RDMA WRITE / RDMA READ to and from the STags in
the iSER header, every other PDU gets its iSCSI answer. Then it misbehaves as a *scenario*
file says. Every PDU, RDMA operation, rule firing and CM event is logged to --log. It exits
on SIGTERM/SIGINT, on an `exit` action, after --timeout seconds, or a few seconds after a
session logged out and its connection closed; it never blocks (non-blocking CM events,
polled CQ).

Scenario language (tests/vm/adv/README has the full list): one directive per line, `#`
starts a comment (the test reads `# expect:` and `# run:` from the comments).

    cm rep=HEX | rep=none | reject | ignore      CM reply private data / refuse / never answer
    login_key KEY=VALUE | -KEY                   override / add / remove a key in the final
                                                 operational-stage Login Response
    text_targets N                               SendTargets lists N more (fake) targets
    text_chunk BYTES                             max data bytes per Text Response (C bit)
    on EVENT [COND...]: ACTION [ARGS] ; ACTION ...
    after SECONDS: ACTION ; ...                  timer, from SIGUSR1 (the test logged in)

EVENT is cmd (any SCSI command), read, write, other (a non-READ/WRITE command), nopout, tmf,
logout, login, text, dataout. COND: n=K (the K-th event matching the rest; n=K+ from the
K-th on), lba=N (READ/WRITE LBA), op=0xNN (CDB opcode), conn=N (connection number, from 1),
stage=0|1 (login), tmf=N (TMF function). The first rule whose conditions hold fires; an
event no rule matches gets normal behaviour. Rule counts are per target process, so
`n=1` hits the first matching command only and the initiator's retry after a recovery is
served normally.
"""

import argparse
import os

from adv_log import Log
from adv_scenario import Scenario
from adv_selftest import selftest
from adv_rdma import rdma_main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--ip', default='10.77.0.1')
    ap.add_argument('--port', type=int, default=3262)
    ap.add_argument('--scenario', default=None)
    ap.add_argument('--log', default=None)
    ap.add_argument('--timeout', type=float, default=120)
    ap.add_argument('--iqn', default='iqn.2026-12.org.iser-rs.test:adv')
    ap.add_argument('--lun-mb', type=int, default=32)
    ap.add_argument('--no-exit-after-logout', dest='exit_after_logout', action='store_false')
    ap.add_argument('--control', default=None,
                    help='serve mode: on SIGHUP read "SCENARIO LOG" from this file and switch')
    ap.add_argument('--selftest', action='store_true')
    ap.add_argument('--check', action='store_true', help='parse the scenario and exit')
    args = ap.parse_args()
    if args.selftest:
        selftest()
        return
    text = open(args.scenario).read() if args.scenario else ''
    scn = Scenario(text)
    if args.check:
        print('%s: %d rules, %d timers' % (args.scenario, len(scn.rules), len(scn.timers)))
        return
    log = Log(args.log)
    log('scenario %s' % args.scenario)
    rdma_main(args, scn, log)
    # No destructors: closing pyverbs objects in the wrong order can crash or block.
    os._exit(0)


if __name__ == '__main__':
    main()
