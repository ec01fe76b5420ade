#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""Sends one iSCSI transport request over NETLINK_ISCSI, as iscsid would, and prints the
kernel's answer (struct iscsi_uevent's iferror): a raw netlink caller for the VM tests.

  iscsi_nl.py stop_conn HANDLE SID CID FLAG
  iscsi_nl.py destroy_conn HANDLE SID CID
  iscsi_nl.py ep_disconnect HANDLE EP_HANDLE
  iscsi_nl.py destroy_session HANDLE SID

HANDLE is /sys/class/iscsi_transport/<name>/handle, EP_HANDLE
/sys/class/iscsi_endpoint/ep-N/handle, FLAG STOP_CONN_TERM (1) or STOP_CONN_RECOVER (3).
Exit status 0 if the kernel answered with iferror 0. Layouts: include/scsi/iscsi_if.h
(struct iscsi_uevent: type, iferror, transport_handle, then the request's union)."""
import os, socket, struct, sys

NETLINK_ISCSI = 8
UEVENT_BASE = 10
TYPES = {"destroy_session": UEVENT_BASE + 2, "destroy_conn": UEVENT_BASE + 4,
         "stop_conn": UEVENT_BASE + 8,
         "ep_disconnect": UEVENT_BASE + 14}
# Room for the whole struct iscsi_uevent (a few hundred bytes): the kernel reads and echoes
# sizeof(struct iscsi_uevent) from the request.
PAYLOAD = 1024


def main():
    op, handle = sys.argv[1], int(sys.argv[2])
    if op == "destroy_conn":
        u = struct.pack("=II", int(sys.argv[3]), int(sys.argv[4]))
    elif op == "stop_conn":
        # struct msg_stop_conn: sid, cid, conn_handle (unused by the class), flag
        u = struct.pack("=IIQI", int(sys.argv[3]), int(sys.argv[4]), 0, int(sys.argv[5]))
    elif op == "destroy_session":
        u = struct.pack("=I", int(sys.argv[3]))
    elif op == "ep_disconnect":
        u = struct.pack("=Q", int(sys.argv[3]))
    else:
        sys.exit("unknown request %s" % op)
    t = TYPES[op]
    ev = struct.pack("=IIQ", t, 0, handle) + u
    ev += b"\0" * (PAYLOAD - len(ev))
    nlh = struct.pack("=IHHII", 16 + len(ev), t, 0, 1, os.getpid())
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ISCSI)
    s.bind((0, 0))
    s.settimeout(30)
    s.send(nlh + ev)
    while True:
        r = s.recv(65536)
        ln, rt, _, _, _ = struct.unpack_from("=IHHII", r)
        if rt == t:
            break
    rtype, iferror = struct.unpack_from("=Ii", r, 16)
    print("%s: answer type %d iferror %d" % (op, rtype, iferror))
    sys.exit(0 if iferror == 0 else 1)


if __name__ == "__main__":
    main()
