# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""The scenario language: rules, actions, timers (tests/vm/adv/README). Part of target.py."""

# --- scenario ----------------------------------------------------------------------------------
class Rule:
    def __init__(self, event, conds, actions, line):
        self.event = event
        self.conds = conds          # dict
        self.actions = actions      # list of (name, args-dict, positional-list)
        self.line = line
        self.count = 0              # events that matched the conditions other than n
        self.fired = 0


def parse_action(text):
    parts = text.split()
    if not parts:
        return None
    name, args, pos = parts[0], {}, []
    for p in parts[1:]:
        if '=' in p and not p.startswith('='):
            k, _, v = p.partition('=')
            args[k] = v
        else:
            pos.append(p)
    return (name, args, pos)


def parse_actions(text):
    return [a for a in (parse_action(x) for x in text.split(';')) if a]


class Scenario:
    EVENTS = ('cmd', 'read', 'write', 'other', 'nopout', 'tmf', 'logout', 'login', 'text',
              'dataout')

    def __init__(self, text=''):
        self.rules = []
        self.timers = []            # (seconds, conn, actions, line)
        self.cm = {}
        self.login_keys = []        # (key, value or None to remove)
        self.text_targets = 0
        self.text_chunk = 8192
        self.wc_error = 'disconnect'
        self.window = 32
        self.arm = 'signal'
        for ln, raw in enumerate(text.splitlines(), 1):
            line = raw.split('#', 1)[0].strip()
            if not line:
                continue
            try:
                self._line(line)
            except Exception as e:
                raise SystemExit('scenario line %d: %s: %s' % (ln, raw.strip(), e))

    def _line(self, line):
        word, _, rest = line.partition(' ')
        rest = rest.strip()
        if word == 'cm':
            for p in rest.split():
                k, _, v = p.partition('=')
                self.cm[k] = v
        elif word == 'login_key':
            for p in rest.split():
                if p.startswith('-'):
                    self.login_keys.append((p[1:], None))
                else:
                    k, _, v = p.partition('=')
                    self.login_keys.append((k, v))
        elif word == 'text_targets':
            self.text_targets = int(rest, 0)
        elif word == 'text_chunk':
            self.text_chunk = int(rest, 0)
        elif word == 'wc_error':
            self.wc_error = rest
        elif word == 'window':
            self.window = int(rest, 0)
        elif word == 'arm':
            self.arm = rest
        elif word == 'on':
            head, sep, acts = rest.partition(':')
            if not sep:
                raise ValueError("missing ':'")
            hp = head.split()
            ev = hp[0]
            if ev not in self.EVENTS:
                raise ValueError('unknown event %s' % ev)
            conds = {}
            for c in hp[1:]:
                k, _, v = c.partition('=')
                conds[k] = v
            self.rules.append(Rule(ev, conds, parse_actions(acts), line))
        elif word == 'after':
            head, sep, acts = rest.partition(':')
            if not sep:
                raise ValueError("missing ':'")
            hp = head.split()
            secs = float(hp[0].rstrip('s'))
            conn = 1
            for c in hp[1:]:
                k, _, v = c.partition('=')
                if k == 'conn':
                    conn = int(v)
            self.timers.append([secs, conn, parse_actions(acts), line])
        else:
            raise ValueError('unknown directive %s' % word)

    def match(self, event, facts):
        """The first rule for `event` (and the generic 'cmd' rules for SCSI commands) whose
        conditions hold, or None. Counts every rule whose conditions other than n hold."""
        kinds = (event,) if event not in ('read', 'write', 'other') else (event, 'cmd')
        hit = None
        for r in self.rules:
            if r.event not in kinds:
                continue
            ok = True
            for k, v in r.conds.items():
                if k == 'n':
                    continue
                if k == 'lba':
                    if facts.get('lba') is None:
                        ok = False
                    elif v.startswith('>='):
                        ok = facts['lba'] >= int(v[2:], 0)
                    else:
                        ok = facts['lba'] == int(v, 0)
                elif k in ('op', 'conn', 'stage', 'tmf'):
                    ok = facts.get(k) == int(v, 0)
                else:
                    ok = False
                if not ok:
                    break
            if not ok:
                continue
            r.count += 1
            if hit is not None:
                continue
            n = r.conds.get('n')
            if n is not None:
                if n.endswith('+'):
                    if r.count < int(n[:-1]):
                        continue
                elif r.count != int(n):
                    continue
            hit = r
        if hit:
            hit.fired += 1
        return hit
