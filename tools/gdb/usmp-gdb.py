# usmp's gdb extension: green threads for the debugger.
#
#   info usmp-threads      every green thread: tid, name, state, CPU,
#                          priorities, wait channel and message
#   usmp-bt TID            backtrace of green thread TID: a parked one from
#                          its saved context, a running one from its CPU's
#                          OS thread
#
# Loaded automatically from libusmp's .debug_gdb_scripts section (gdb asks
# for `set auto-load safe-path` to cover the program); by hand:
# `source share/usmp/gdb/usmp-gdb.py`.  Needs the program's debug info
# (RelWithDebInfo or Debug builds of usmp).
#
# A parked green thread's context (struct thread::td_ctx.c_word) is a
# Boost.Context fcontext_t: the stack pointer that jump_fcontext saved, with
# (x86-64 System V) mxcsr/x87 control word at +0x00, r12 r13 r14 r15 rbx rbp
# at +0x08..+0x30 and the return address at +0x38; the thread resumes with
# rsp = fcontext + 0x40.  usmp-bt points the selected OS thread's rsp, rbp
# and rip there for the length of one `backtrace`, then puts them back.
import gdb

_STATES = {0: "inactive", 2: "can run", 3: "runnable", 4: "running"}
_TDF_IDLETD = 0x1


def _machine():
    return gdb.parse_and_eval("'usmp::g_machine'")


def _state(td):
    st = int(td["td_state"])
    if st != 1:
        return _STATES.get(st, "?")
    inhib = int(td["td_inhibitors"])
    if inhib & 0x08:
        return "joining"
    if inhib & 0x01:
        return "sleeping"
    if inhib & 0x02:
        return "blocked"
    if inhib & 0x04:
        return "iwait"
    return "inhibited"


def _threads():
    """Yield every live green thread (struct thread *)."""
    m = _machine()
    if int(m["ms_threads"]) == 0:
        return
    for i in range(int(m["ms_ncpus"]) + 1):
        td = m["ms_threads"][i]["tl_head"]
        seen = 0
        while int(td) != 0 and seen < 1000000:
            yield td
            td = td["td_allnext"]
            seen += 1


def _running_cpu(td):
    m = _machine()
    for c in range(int(m["ms_ncpus"])):
        pc = m["ms_pcpus"][c]
        if int(pc["pc_curthread"]) == int(td):
            return c, int(pc["pc_os_tid"])
    return None, None


def _find(tid):
    for td in _threads():
        if int(td["td_tid"]) == tid:
            return td
    return None


class InfoUsmpThreads(gdb.Command):
    """List usmp's green threads: tid, name, state, CPU, priority (base, lent), wait channel."""

    def __init__(self):
        super().__init__("info usmp-threads", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        n = 0
        gdb.write("%6s  %-24s %-10s %5s  %-14s %s\n" %
                  ("tid", "name", "state", "cpu", "pri (base)", "wchan"))
        for td in _threads():
            n += 1
            lend = int(td["td_lend_pri"])
            pri = "%d (%d%s)" % (int(td["td_priority"]), int(td["td_base_pri"]),
                                 "" if lend == 255 else ", lent %d" % lend)
            wait = ""
            if int(td["td_state"]) == 1:
                wmesg = td["td_wmesg"]
                msg = wmesg.string() if int(wmesg) != 0 else ""
                wait = "%s \"%s\"" % (hex(int(td["td_wchan"])), msg)
            gdb.write("%6d  %-24s %-10s %5d  %-14s %s\n" % (
                int(td["td_tid"]), "\"%s\"" % td["td_name"].string(),
                _state(td), int(td["td_cpu"]), pri, wait))
        gdb.write("%d green threads\n" % n)


class UsmpBt(gdb.Command):
    """usmp-bt TID: backtrace of the green thread with id TID (an expression)."""

    def __init__(self):
        super().__init__("usmp-bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        argv = gdb.string_to_argv(arg)
        if len(argv) != 1:
            raise gdb.GdbError("usage: usmp-bt TID")
        tid = int(gdb.parse_and_eval(argv[0]))
        td = _find(tid)
        if td is None:
            raise gdb.GdbError("usmp-bt: no green thread with tid %d" % tid)
        name = td["td_name"].string()
        cpu, lwp = _running_cpu(td)
        if cpu is not None:
            # Running: its frames are on its CPU's OS thread.
            old = gdb.selected_thread()
            for t in gdb.selected_inferior().threads():
                if t.ptid[1] == lwp:
                    gdb.write("green thread \"%s\" (tid %d) runs on cpu%d "
                              "(LWP %d):\n" % (name, tid, cpu, lwp))
                    t.switch()
                    try:
                        gdb.execute("backtrace")
                    finally:
                        old.switch()
                    return
            raise gdb.GdbError("usmp-bt: cpu%d's OS thread not found" % cpu)
        fctx = int(td["td_ctx"]["c_word"])
        if fctx == 0:
            raise gdb.GdbError("usmp-bt: thread %d has no saved context "
                               "(being switched?)" % tid)
        u64 = gdb.lookup_type("unsigned long").pointer()
        rbp = int(gdb.Value(fctx + 0x30).cast(u64).dereference())
        rip = int(gdb.Value(fctx + 0x38).cast(u64).dereference())
        rsp = fctx + 0x40
        gdb.write("green thread \"%s\" (tid %d), %s, parked:\n" %
                  (name, tid, _state(td)))
        gdb.execute("frame 0", to_string=True)
        saved = [int(gdb.parse_and_eval("$" + r)) for r in ("rsp", "rbp", "rip")]
        try:
            gdb.execute("set $rsp = %#x" % rsp, to_string=True)
            gdb.execute("set $rbp = %#x" % rbp, to_string=True)
            gdb.execute("set $rip = %#x" % rip, to_string=True)
            gdb.execute("backtrace")
        finally:
            gdb.execute("set $rsp = %#x" % saved[0], to_string=True)
            gdb.execute("set $rbp = %#x" % saved[1], to_string=True)
            gdb.execute("set $rip = %#x" % saved[2], to_string=True)
            gdb.execute("frame 0", to_string=True)


InfoUsmpThreads()
UsmpBt()
