#!/usr/bin/python3
"""Reads ThreadSanitizer's reports (TSAN_OPTIONS log_path=) and fails on any that concerns meshd.

Usage: triage.py SOURCE_ROOT REPORT_FILE...

gRPC and protobuf are Debian's builds, not instrumented: TSan does not see the synchronization by
which gRPC's core hands its objects between its threads, so code that runs on those objects on
gRPC's behalf (Abseil's Status and Cord, std::string and std::function, all instrumented) is
reported as racing with itself. A data race is gRPC's own when each of its two accesses, read from
the top of its stack past the standard library, Abseil, protobuf and TSan's runtime, reaches gRPC's
code (its libraries, the grpcpp headers) before any of meshd's (daemon/, client/, common/, tests/,
examples/, bench/). Those are counted and listed by the gRPC function they came from; every other
report fails the run and is printed whole: a race one of whose accesses is meshd's code (with
meshd, or with gRPC), a stack that reaches neither, and every report that is not a data race
(lock-order inversion, a mutex destroyed while locked, ...) — except two kinds of report that
are gRPC's too, counted with its own: a leak of a thread gRPC created (its creation stack reaches
gRPC before meshd: its executor's threads, which it lets end after a client's main returns), and
a race between meshd allocating an object (`operator new`, which TSan counts as a write of the
whole block) and gRPC's code reading it on gRPC's behalf — an object meshd hands to gRPC (a
call's context, a reactor), which gRPC's own threads touch after it was handed over, by an
ordering TSan cannot see. A race with meshd's code after the allocation still fails. Likewise a
race between a reactor's `OnDone` (meshd's code under gRPC's `CallOnDone`/`MaybeFinish`) and gRPC's
code: OnDone runs after every operation of its call completed (gRPC's contract), so what gRPC did
with the reactor's memory — serializing the message it was given — came before.
"""
import collections
import re
import sys

MESHD_DIRS = ('daemon/', 'client/', 'common/', 'tests/', 'examples/', 'bench/')
GRPC_MODULE = re.compile(r'^(libgrpc|libgpr|libupb|libaddress_sorting)')
GRPC_HEADERS = ('/usr/include/grpcpp/', '/usr/include/grpc/', '/usr/include/grpc++/')
GRPC_FUNCTION = ('grpc::', 'grpc_core::', 'grpc_', 'gpr_')
# "    #3 function file:line:col (module+0x1234) (BuildId: ...)"; function names have spaces.
FRAME = re.compile(r'^    #\d+ (?P<fn>.*?) (?P<loc>\S+)(?: \((?P<mod>[^)]*?)\+0x[0-9a-f]+\))?'
                   r'(?: \(BuildId: [0-9a-f]+\))?$')
# gRPC's callers of a reactor's OnDone, the reaction after every other (server and client side).
ON_DONE = re.compile(r'^grpc::.*::(CallOnDone|MaybeFinish)\b')
CREATED = re.compile(r'^  Thread T\d+ .*created by .* at:$')
ACCESS = re.compile(r'^  (?:Previous )?(?:[Aa]tomic )?(?:[Rr]ead|[Ww]rite) of size ')


def owner(frames, root):
    """'meshd', 'grpc' or None: whose code made the access."""
    for fn, loc, mod in frames:
        path = loc.split(':')[0]
        if path.startswith(root + '/') and path[len(root) + 1:].startswith(MESHD_DIRS):
            return 'meshd'
        if GRPC_MODULE.match(mod) or path.startswith(GRPC_HEADERS) or fn.startswith(GRPC_FUNCTION):
            return 'grpc', mod if fn == '<null>' else fn
    return None


def stacks_under(report, header):
    """The stacks printed under each line `header` matches: lists of (function, location, module)."""
    stacks, stack = [], None
    for line in report.split('\n'):
        if header.match(line):
            stack = []
            stacks.append(stack)
        elif stack is not None and line.startswith('    #'):
            m = FRAME.match(line)
            stack.append((m.group('fn'), m.group('loc'), m.group('mod') or '') if m else
                         (line.strip(), '', ''))
        else:
            stack = None
    return stacks


def creations(report):
    """The stacks that created the threads a thread leak names."""
    return stacks_under(report, CREATED)


def accesses(report):
    """The stacks of a data race's two accesses."""
    return stacks_under(report, ACCESS)


def main():
    root = sys.argv[1].rstrip('/')
    failing, grpc_own = [], collections.Counter()
    for path in sys.argv[2:]:
        with open(path, errors='replace') as f:
            text = f.read()
        for report in re.split(r'^=+\n', text, flags=re.M):
            m = re.search(r'^WARNING: ThreadSanitizer: (.*?)(?: \(pid=\d+\))?$', report, re.M)
            if not m:
                continue
            kind = m.group(1)
            stacks = accesses(report)
            owners = [owner(s, root) for s in stacks]
            race = kind.startswith('data race')  # also 'data race on vptr (ctor/dtor vs virtual call)'
            if race and owners and all(isinstance(o, tuple) for o in owners):
                grpc_own[' / '.join(sorted(o[1].split('(')[0][:70] for o in owners))] += 1
            elif race and len(owners) == 2 and any(
                    isinstance(o, tuple) for o in owners) and any(
                    o == 'meshd' and st and st[0][0].startswith('operator new')
                    for o, st in zip(owners, stacks)):
                grpc_own['handed to gRPC: ' + next(
                    o for o in owners if isinstance(o, tuple))[1].split('(')[0][:55]] += 1
            elif race and len(owners) == 2 and any(
                    isinstance(o, tuple) for o in owners) and any(
                    o == 'meshd' and any(ON_DONE.search(fn) for fn, _, _ in st)
                    for o, st in zip(owners, stacks)):
                grpc_own['after its OnDone: ' + next(
                    o for o in owners if isinstance(o, tuple))[1].split('(')[0][:55]] += 1
            elif kind == 'thread leak' and (made := [owner(s, root) for s in creations(report)]) \
                    and all(isinstance(o, tuple) for o in made):
                grpc_own['thread leak: a thread ' + made[0][1].split('(')[0][:50]] += 1
            else:
                failing.append((path, kind, owners, report))
    print('tsan: %d reports that are gRPC\'s (both accesses on its behalf, its threads, objects '
          'handed to it), not meshd\'s:' % sum(grpc_own.values()))
    for where, n in grpc_own.most_common(8):
        print('  %4d  %s' % (n, where))
    for path, kind, owners, report in failing:
        said = ', '.join('meshd' if o == 'meshd' else 'gRPC' if o else 'unknown' for o in owners)
        print('\ntsan: %s (%s) in %s:\n%s' % (kind, said or 'no access stacks', path, report.strip()))
    if failing:
        print('\ntsan: %d report(s) concern meshd: FAILED' % len(failing))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
