"""Sepal's fork server for `flwr-clientapp` (started by the SuperNode; see forkserver.rs).

Run as `python -c <BOOTSTRAP> <size> <program> <module> <function> [<module>...]`, with
fd 0 a Unix socket to the SuperNode, which first sends this script (<size> bytes) on it.
Imports the entry point once (and the further modules named, which the entry point would
import in every child), then forks one child per request; the child leaves the server's loop and
runs `sys.exit(<function>())` with the argv it was sent, as the `<program>` console script
does, and ends as any interpreter does (non-daemon threads joined, atexit handlers run).
The import is what forking saves: each message is still served by a new process.

Protocol, one JSON object per line on fd 0:
  in:  {"spawn": [arg, ...]}   (argv after the program name)
       {"kill": pid}           (SIGKILL, if pid is a child not yet reaped)
  out: {"ready": pid}          once, after the import
       {"spawned": pid} or {"error": "..."}   per spawn, in request order
       {"exited": pid, "status": n}           n is the raw waitpid status
End of input (the SuperNode closed its end or died): kill the children and exit.
"""

import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
import threading
import traceback

# How often the loop checks that the SuperNode is still the parent, should its end of the
# socket outlive it (seconds).
PARENT_CHECK = 1.0


def exit_code(value):
    """The exit code `sys.exit(value)` gives, as the console script ends."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


class BecomeChild(BaseException):
    """Raised in a fresh child to leave the server's loop; carries the child's argv."""


class Server:
    def __init__(self, program, entry, control):
        self.program = program
        self.entry = entry
        self.control = control
        self.children = set()
        # The handlers a fresh interpreter has, restored in each child.
        self.handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGCHLD)}
        # Ctrl-C reaches the whole process group; the SuperNode decides when this ends.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # SIGCHLD wakes the loop through this pipe, so exits are reported at once.
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def send(self, obj):
        self.control.sendall((json.dumps(obj) + "\n").encode())

    def serve(self):
        parent = os.getppid()
        buffered = b""
        while os.getppid() == parent:
            ready, _, _ = select.select([self.control, self.wake_r], [], [], PARENT_CHECK)
            if self.wake_r in ready:
                while True:
                    try:
                        if not os.read(self.wake_r, 512):
                            break
                    except BlockingIOError:
                        break
            self.reap()
            if self.control in ready:
                data = self.control.recv(65536)
                if not data:
                    return
                *lines, buffered = (buffered + data).split(b"\n")
                for line in lines:
                    self.handle(line)

    def handle(self, line):
        try:
            request = json.loads(line)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            print(f"sepal fork server: bad request {line[:80]!r}", file=sys.stderr)
            return
        if "spawn" in request:
            self.spawn([str(arg) for arg in request["spawn"]])
        elif "kill" in request and request["kill"] in self.children:
            # Only an unreaped child: its pid cannot have been reused.
            os.kill(request["kill"], signal.SIGKILL)

    def spawn(self, args):
        # Output still buffered here would be written again by the child.
        flush_output()
        try:
            pid = os.fork()
        except OSError as e:
            self.send({"error": str(e)})
            return
        if pid == 0:
            raise BecomeChild(args)
        self.children.add(pid)
        self.send({"spawned": pid})

    def reap(self):
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send({"exited": pid, "status": status})

    def become_child(self, args):
        """Turns this freshly forked process into `program args...`, as started anew: the
        server's signal handling undone, stdin /dev/null (the SuperNode gives a spawned
        ClientApp that), the server's descriptors closed, its argv."""
        signal.set_wakeup_fd(-1)
        for sig, handler in self.handlers.items():
            signal.signal(sig, handler)
        os.close(self.wake_r)
        os.close(self.wake_w)
        # The control socket is fd 0: /dev/null takes its place.
        self.control.detach()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sys.argv = [self.program] + args

    def stop(self):
        for pid in self.children:
            os.kill(pid, signal.SIGKILL)
        for pid in self.children:
            os.waitpid(pid, 0)


def flush_output():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def main():
    program, module, function = sys.argv[2:5]
    # A script's directory leads sys.path (`-c` would put the working directory there).
    if not getattr(sys.flags, "safe_path", False):
        sys.path[0] = os.path.dirname(os.path.realpath(program))
    entry = getattr(importlib.import_module(module), function)
    for later in sys.argv[5:]:
        try:
            importlib.import_module(later)
        except ImportError:
            pass  # another version of a dependency: the child imports what it needs
    # What is imported now lives as long as any child: the collector need not look at it.
    # A child's collections (flwr-clientapp collects after every message) then neither
    # walk nor write to these objects' pages, which stay shared with the server.
    gc.freeze()
    # A Python thread could hold a lock the child then waits on forever. (C-level pools,
    # such as the one OpenBLAS starts with numpy, handle fork themselves: pthread_atfork.)
    if threading.active_count() != 1:
        sys.exit(f"sepal fork server: importing {module} started threads; forking is unsafe")
    control = socket.socket(fileno=0)
    server = Server(program, entry, control)
    server.send({"ready": os.getpid()})
    try:
        server.serve()
    except BecomeChild as child:
        # A new process: nothing of the server's is to be done here, not even its cleanup.
        server.become_child(child.args[0])
        del server, control
        return entry
    except (BrokenPipeError, ConnectionResetError):
        pass  # the SuperNode is gone
    server.stop()
    return None


# In a child, the entry point runs here, outside every frame of the server, as the console
# script runs it; the interpreter then ends as usual.
_entry = main()
if _entry is not None:
    del main
    sys.exit(_entry())
