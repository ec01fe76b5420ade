# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""The action log (and its status file for the test). Part of target.py."""

import sys

from adv_pdu import now


# --- log ---------------------------------------------------------------------------------------
class Log:
    """The action log; LOG.st holds "RULES_FIRED ERRORS RUNNING" for the test (a shell reads
    it with one builtin instead of scanning a long log): RUNNING counts the fired rules and
    timers whose actions have not ended yet (a `sleep` among them), which the test waits for
    before it judges."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, 'a', buffering=1) if path else sys.stderr
        self.t0 = now()
        self.fired = self.errors = self.running = 0

    def reopen(self, path):
        if self.f is not sys.stderr:
            self.f.close()
        self.path = path
        self.f = open(path, 'a', buffering=1)
        self.t0 = now()
        self.fired = self.errors = self.running = 0

    def __call__(self, msg):
        self.f.write('%8.3f %s\n' % (now() - self.t0, msg))
        if 'RULE fired' in msg or msg.startswith(('timer fired', 'ERROR in task')):
            if msg.startswith('ERROR'):
                self.errors += 1
            else:
                self.fired += 1
            self.write_st()

    def actions(self, delta):
        """A fired rule's or timer's actions started (+1) or ended (-1)."""
        self.running = max(0, self.running + delta)
        self.write_st()

    def write_st(self):
        if self.path:
            with open(self.path + '.st', 'w') as st:
                st.write('%d %d %d\n' % (self.fired, self.errors, self.running))

    def flush(self):
        try:
            self.f.flush()
        except Exception:
            pass
