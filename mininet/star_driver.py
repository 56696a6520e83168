"""Mininet driver of the testbed: a star of hosts around one P4 switch, running the commands a JSON spec names.

Run it with Debian's system Python, which is where Mininet lives (not in the project's venv):

    /usr/bin/python3 -P mininet/star_driver.py --spec SPEC.json

`-P` keeps this script's folder off sys.path: the folder is named `mininet/` and would otherwise shadow the real
Mininet package. This file imports ONLY Mininet and the standard library, so it cannot share code with the rest of
omnireduce.testbed (which runs in the venv); the venv side (omnireduce.testbed.mininet_run) writes the spec and
reads the report this script writes.

What it does, each step with a deadline, stopping at the first failure:
1. builds the star: hosts `<prefix>h<i>` with the spec's IPv4/MAC addresses, each linked to switch port `port`;
   IPv6 off on every host and switch interface (no router solicitations or MLD reports on the links); static
   ARP entries on every host for the aggregator's virtual address and for every other host; the `netem`
   impairments on the links' ends (they go away with the interfaces);
2. starts the switch on its interfaces (a process: BMv2's simple_switch_grpc or omnireduce-switch, built from the
   spec's argv template) and waits until its gRPC port accepts connections;
3. runs the `setup` commands in the root namespace (the controller: pipeline and jobs), each to completion;
4. starts every agent in its host's namespace, then waits for all of them, failing as soon as one exits non-zero,
   the switch dies, or the deadline passes;
5. runs the `after` commands (reading the switch's counters) while the switch is still up;
6. always (also on failure, SIGINT or SIGTERM): stops what it started, by pid, and `net.stop()`, which removes the
   links and the hosts' namespaces. It never runs Mininet's machine-wide cleanup and never kills anything by name.

Spec (JSON object):
    name_prefix: str            unique per run, [a-z0-9], <= 6 chars: node names (and interface names) start with it
    log_dir: str                where every process's stdout/stderr go (<name>.stdout / <name>.stderr)
    report: str                 where the report is written
    pid_file: str               every started pid is appended here as it starts (JSON lines), so that the caller
                                can kill survivors if this driver itself is killed hard
    aggregator: {ip, mac}       the switch's virtual address, which workers send to
    hosts: [{name, ip, prefix_len, mac, port}]   `name` is a short label ("w0"); port is the switch port
    switch: {kind: "process" | "linux-bridge",
             argv_prefix: [str], interface_flag: str, interface_format: str ("{port}@{intf}"), argv_suffix: [str],
             grpc_port: int | null, ready_timeout: float}
            "linux-bridge" joins the interfaces in a plain Linux bridge instead (to test this driver alone).
    setup: [{name, argv, timeout}]      run in the root namespace, in order, after the switch is ready
    agents: [{name, host, argv, title}] started together; `title` names the agent in messages ("worker 2 of job 0")
    agent_timeout: float | null         deadline for all agents, from their start (null: none; agents stop on their own
                                        stall limits)
    after: [{name, argv, timeout}]      run in the root namespace after the agents
    netem: [{port, side, args, seed}]   impairments: `tc qdisc replace dev INTF root netem ARGS` on the link of switch
                                        port `port`, on its host's side ("host": what the host sends) or the
                                        switch's ("switch": what the switch sends); `seed N` is added where tc has it
    kill_switch_after_s: float | null   fault injection: SIGKILL the switch this long after the agents start
    stop_agent: str | null              fault injection: SIGSTOP this agent as soon as it starts (a hung worker)

Report (JSON object): {ok, failure, phase, setup_s, agents_elapsed_s, agents: [{name, returncode, elapsed_s}],
switch_returncode}. Exit code 0 when ok, 1 when a step failed, 2 for a bad spec or no Mininet/root.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

# Mininet is imported inside main(): the spec code above stays importable (and unit-testable) without it.

GRACE_S = 3.0


class DriverError(Exception):
    """A step failed; the message says which, for the report."""


class Interrupted(BaseException):
    """SIGINT/SIGTERM: unwinds through every finally block so the network is torn down."""


def _on_signal(signum, _frame):
    raise Interrupted("driver received {}".format(signal.Signals(signum).name))


# --- the spec ---------------------------------------------------------------------------------------------------


def load_spec(path):
    with open(path, encoding="utf-8") as stream:
        spec = json.load(stream)
    check_spec(spec)
    return spec


def check_spec(spec):
    """Raise ValueError naming the first missing or malformed field."""
    if not isinstance(spec, dict):
        raise ValueError("spec must be a JSON object")
    for key in ("name_prefix", "log_dir", "report", "pid_file", "aggregator", "hosts", "switch", "agents"):
        if key not in spec:
            raise ValueError("spec lacks {!r}".format(key))
    prefix = spec["name_prefix"]
    if not (isinstance(prefix, str) and 1 <= len(prefix) <= 6 and prefix.isalnum() and prefix.islower()):
        raise ValueError("name_prefix must be 1-6 lower-case letters/digits, got {!r}".format(prefix))
    hosts = spec["hosts"]
    if not hosts:
        raise ValueError("spec has no hosts")
    labels = set()
    ports = set()
    for host in hosts:
        for key in ("name", "ip", "prefix_len", "mac", "port"):
            if key not in host:
                raise ValueError("host {} lacks {!r}".format(host, key))
        if host["name"] in labels or host["port"] in ports:
            raise ValueError("duplicate host name or port: {}".format(host))
        if not (isinstance(host["port"], int) and 1 <= host["port"] < 511):
            raise ValueError("host {}: port must be in 1..510".format(host["name"]))
        labels.add(host["name"])
        ports.add(host["port"])
    for agent in spec["agents"]:
        if agent.get("host") not in labels:
            raise ValueError("agent {} runs on unknown host {!r}".format(agent.get("name"), agent.get("host")))
    switch = spec["switch"]
    if switch.get("kind") not in ("process", "linux-bridge"):
        raise ValueError("switch kind must be 'process' or 'linux-bridge', got {!r}".format(switch.get("kind")))
    if switch["kind"] == "process" and not switch.get("argv_prefix"):
        raise ValueError("a process switch needs argv_prefix")


def node_name(spec, label):
    """Mininet node name of host `label`; interface names derive from it and must fit 15 characters."""
    return "{}{}".format(spec["name_prefix"], label)


def switch_name(spec):
    return "{}s1".format(spec["name_prefix"])


def switch_argv(switch_spec, interfaces):
    """The switch's command line: prefix, one `flag PORT@INTF` per (port, interface name), suffix."""
    argv = list(switch_spec["argv_prefix"])
    flag = switch_spec.get("interface_flag", "-i")
    form = switch_spec.get("interface_format", "{port}@{intf}")
    for port, intf in sorted(interfaces):
        argv += [flag, form.format(port=port, intf=intf)]
    return argv + list(switch_spec.get("argv_suffix", []))


# --- processes --------------------------------------------------------------------------------------------------


class Started:
    """A process this driver started (in its own session: its pid is its process group id)."""

    def __init__(self, name, popen, log_dir):
        self.name = name
        self.popen = popen
        self.pid = popen.pid
        self.log_dir = log_dir
        self.started_at = time.monotonic()
        self.ended_at = None

    def poll(self):
        code = self.popen.poll()
        if code is not None and self.ended_at is None:
            self.ended_at = time.monotonic()
        return code

    def last_line(self, suffixes=(".stderr", ".stdout")):
        for suffix in suffixes:
            try:
                with open(os.path.join(self.log_dir, self.name + suffix), "rb") as stream:
                    stream.seek(0, os.SEEK_END)
                    stream.seek(max(0, stream.tell() - 8192))
                    lines = [line.strip() for line in stream.read().decode("utf-8", "replace").splitlines()]
            except OSError:
                continue
            lines = [line for line in lines if line]
            if lines:
                return lines[-1]
        return ""

    def failure(self, what, quote_stdout=True):
        """'<what> exited with code 3: <last log line>'; the switch's stdout (listening/ready lines) is not quoted."""
        code = self.poll()
        text = "{} exited with code {}".format(what, code) if code >= 0 else "{} died ({})".format(
            what, _signal_text(code))
        line = self.last_line((".stderr", ".stdout") if quote_stdout else (".stderr",))
        if not line and not quote_stdout:
            line = self.first_error_line()
        return "{}: {}".format(text, line) if line else text

    def first_error_line(self):
        """BMv2 prints its errors, then its usage, on stdout: the first line that mentions an error."""
        try:
            with open(os.path.join(self.log_dir, self.name + ".stdout"), encoding="utf-8", errors="replace") as log:
                for line in log:
                    if "error" in line.lower():
                        return line.strip()
        except OSError:
            pass
        return ""

    def stop(self):
        if self.poll() is None:
            _killpg(self.pid, signal.SIGTERM)
            _killpg(self.pid, signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
            try:
                self.popen.wait(GRACE_S)
            except subprocess.TimeoutExpired:
                _killpg(self.pid, signal.SIGKILL)
                self.popen.wait()
        else:
            _killpg(self.pid, signal.SIGKILL)  # whatever it left in its group
        self.poll()


def _signal_text(code):
    try:
        return "{}, exit {}".format(signal.Signals(-code).name, code)
    except ValueError:
        return "exit {}".format(code)


def _killpg(pid, signum):
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class Runner:
    """Starts processes with logs and pid records, and stops them all, newest first."""

    def __init__(self, spec):
        self.log_dir = spec["log_dir"]
        self.pid_file = spec["pid_file"]
        self.started = []

    def _open_logs(self, name):
        return (open(os.path.join(self.log_dir, name + ".stdout"), "wb"),
                open(os.path.join(self.log_dir, name + ".stderr"), "wb"))

    def _record(self, started, argv):
        with open(self.pid_file, "a", encoding="utf-8") as stream:
            stream.write(json.dumps({"name": started.name, "pid": started.pid, "argv": argv}) + "\n")

    def start_root(self, name, argv):
        stdout, stderr = self._open_logs(name)
        with stdout, stderr:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                     start_new_session=True)
        started = Started(name, popen, self.log_dir)
        self.started.append(started)
        self._record(started, argv)
        return started

    def start_in_host(self, name, host, argv):
        stdout, stderr = self._open_logs(name)
        with stdout, stderr:
            # mnexec -d: new session (so the pid is a process group we can signal); -a PID: the host's namespace.
            popen = host.popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        started = Started(name, popen, self.log_dir)
        self.started.append(started)
        # What /proc/PID/cmdline will show once mnexec has exec'd the command.
        self._record(started, argv)
        return started

    def stop_all(self):
        for started in reversed(self.started):
            try:
                started.stop()
            except Exception as error:  # one failure must not keep the others running
                sys.stderr.write("driver: could not stop {} (pid {}): {}\n".format(started.name, started.pid, error))


def run_to_completion(runner, step, what):
    started = runner.start_root(step["name"], step["argv"])
    try:
        started.popen.wait(float(step.get("timeout", 60)))
    except subprocess.TimeoutExpired:
        started.stop()
        raise DriverError("{} did not finish within {} s".format(what, step.get("timeout", 60)))
    if started.poll() != 0:
        raise DriverError(started.failure(what))


def wait_for_port(port, deadline, switch_process):
    """Poll until 127.0.0.1:port accepts a TCP connection; fail early if the switch process dies."""
    while True:
        if switch_process is not None and switch_process.poll() is not None:
            raise DriverError(switch_process.failure("switch process", quote_stdout=False))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise DriverError("switch gRPC port {} did not open in time".format(port))
        time.sleep(0.1)


# --- the network ------------------------------------------------------------------------------------------------


def build_classes(spec, runner):
    """The Topo and Switch classes; defined here because they subclass Mininet's, imported lazily."""
    from mininet.node import Switch
    from mininet.topo import Topo
    from mininet.util import quietRun

    class StarTopo(Topo):
        def build(self, **_params):
            switch = self.addSwitch(switch_name(spec), dpid="1")
            for host in spec["hosts"]:
                name = self.addHost(node_name(spec, host["name"]),
                                    ip="{}/{}".format(host["ip"], host["prefix_len"]), mac=host["mac"])
                self.addLink(name, switch, port1=0, port2=host["port"])

    class P4Switch(Switch):
        """A switch that is a process on its interfaces (BMv2 or omnireduce-switch) or, for tests of this driver,
        a Linux bridge. It lives in the root namespace, like Mininet's OVS switches."""

        def __init__(self, name, **params):
            Switch.__init__(self, name, **params)
            self.process = None
            self.bridge = None

        def interfaces(self):
            return [(port, intf.name) for port, intf in self.intfs.items() if intf.name != "lo"]

        def start(self, controllers):
            for _port, intf in self.interfaces():
                quietRun("sysctl -qw net.ipv6.conf.{}.disable_ipv6=1".format(intf))
            kind = spec["switch"]["kind"]
            if kind == "linux-bridge":
                self.bridge = "{}br".format(spec["name_prefix"])
                _check_ip("link add name {} type bridge".format(self.bridge))
                for _port, intf in self.interfaces():
                    _check_ip("link set dev {} master {}".format(intf, self.bridge))
                _check_ip("link set dev {} up".format(self.bridge))
            else:
                self.process = runner.start_root("switch", switch_argv(spec["switch"], self.interfaces()))

        def stop(self, deleteIntfs=True):
            if self.process is not None:
                self.process.stop()
            if self.bridge is not None:
                quietRun("ip link del {}".format(self.bridge))
                self.bridge = None
            Switch.stop(self, deleteIntfs)

    def _check_ip(arguments):
        output = quietRun("ip " + arguments)
        if output.strip():
            raise DriverError("ip {}: {}".format(arguments, output.strip()))

    return StarTopo, P4Switch


def configure_hosts(net, spec):
    """IPv6 off, and static ARP entries for the aggregator and every other host."""
    aggregator = spec["aggregator"]
    neighbours = [(host["ip"], host["mac"]) for host in spec["hosts"]] + [(aggregator["ip"], aggregator["mac"])]
    for host_spec in spec["hosts"]:
        host = net.get(node_name(spec, host_spec["name"]))
        host.cmd("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
        intf = host.defaultIntf().name
        for ip, mac in neighbours:
            if ip == host_spec["ip"]:
                continue
            output = host.cmd("ip neigh replace {} lladdr {} dev {} nud permanent".format(ip, mac, intf))
            if output.strip():
                raise DriverError("static ARP on {}: {}".format(host.name, output.strip()))


NETEM_MISSING_HINT = ("; this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM, module sch_netem): impair in the "
                      "softswitch instead (--impair-at switch)")


def netem_command(intf, entry, seeded):
    args = list(entry["args"])
    if seeded and entry.get("seed") is not None:
        args += ["seed", str(entry["seed"])]
    return "tc qdisc replace dev {} root netem {}".format(intf, " ".join(args))


def apply_netem(net, spec):
    """Put the spec's netem qdiscs on the links' ends; raise DriverError saying which failed and why."""
    entries = spec.get("netem") or []
    if not entries:
        return
    from mininet.util import quietRun

    # iproute2 reads `seed` only from 6.8 on (older versions refuse it): use it where `tc` lists it.
    seeded = " seed " in quietRun("tc qdisc add dev lo root netem help")
    switch = net.get(switch_name(spec))
    hosts = {host["port"]: host for host in spec["hosts"]}
    for entry in entries:
        if entry["side"] == "host":
            node = net.get(node_name(spec, hosts[entry["port"]]["name"]))
            intf, run_command = node.defaultIntf().name, node.cmd
        else:
            intf, run_command = switch.intfs[entry["port"]].name, quietRun
        command = netem_command(intf, entry, seeded)
        output = run_command(command).strip()
        if output:
            hint = NETEM_MISSING_HINT if "qdisc kind is unknown" in output else ""
            raise DriverError("{}: {}{}".format(command, output, hint))


def run_agents(spec, net, runner, switch_process, report):
    agents = []
    titles = {}
    for agent in spec["agents"]:
        host = net.get(node_name(spec, agent["host"]))
        started = runner.start_in_host(agent["name"], host, agent["argv"])
        titles[started.name] = agent.get("title", agent["name"])
        if agent["name"] == spec.get("stop_agent"):
            _killpg(started.pid, signal.SIGSTOP)
        agents.append(started)
    started_at = time.monotonic()
    agent_timeout = spec.get("agent_timeout")
    deadline = started_at + float(agent_timeout) if agent_timeout is not None else float("inf")
    kill_at = spec.get("kill_switch_after_s")
    kill_at = None if kill_at is None else started_at + float(kill_at)
    try:
        while True:
            if kill_at is not None and time.monotonic() >= kill_at and switch_process is not None:
                _killpg(switch_process.pid, signal.SIGKILL)
                kill_at = None
            if switch_process is not None and switch_process.poll() is not None:
                raise DriverError(switch_process.failure("switch process", quote_stdout=False))
            for agent in agents:
                code = agent.poll()
                if code is not None and code != 0:
                    raise DriverError(agent.failure(titles[agent.name]))
            if all(agent.poll() is not None for agent in agents):
                return
            if time.monotonic() >= deadline:
                running = [titles[agent.name] for agent in agents if agent.poll() is None]
                raise DriverError("{} still running after {} s (timeout)".format(
                    ", ".join(running), spec.get("agent_timeout", 60)))
            # Agents are other namespaces' processes: poll their exit at a short interval up to the deadline.
            time.sleep(0.05)
    finally:
        report["agents_elapsed_s"] = time.monotonic() - started_at
        report["agents"] = [{"name": agent.name, "returncode": agent.poll(),
                             "elapsed_s": (agent.ended_at or time.monotonic()) - agent.started_at}
                            for agent in agents]


def run(spec):
    from mininet.log import setLogLevel
    from mininet.net import Mininet

    setLogLevel("warning")
    # Mininet.init() would raise system-wide limits and sysctls (fixLimits) that outlive the run; the star
    # needs none of them, so mark it done and check for root ourselves.
    Mininet.inited = True
    report = {"ok": False, "failure": None, "phase": "build", "setup_s": 0.0, "agents_elapsed_s": 0.0,
              "agents": [], "switch_returncode": None}
    runner = Runner(spec)
    net = None
    began = time.monotonic()
    try:
        StarTopo, P4Switch = build_classes(spec, runner)
        net = Mininet(topo=StarTopo(), switch=P4Switch, controller=None, autoSetMacs=False, build=False,
                      waitConnected=False)
        net.build()
        configure_hosts(net, spec)
        report["phase"] = "netem"
        apply_netem(net, spec)
        report["phase"] = "switch"
        net.start()
        switch = net.get(switch_name(spec))
        switch_process = switch.process
        grpc_port = spec["switch"].get("grpc_port")
        if grpc_port:
            wait_for_port(int(grpc_port), time.monotonic() + float(spec["switch"].get("ready_timeout", 30)),
                          switch_process)
        report["phase"] = "setup"
        for step in spec.get("setup", []):
            run_to_completion(runner, step, "setup step {}".format(step["name"]))
        report["setup_s"] = time.monotonic() - began
        report["phase"] = "agents"
        run_agents(spec, net, runner, switch_process, report)
        report["phase"] = "after"
        for step in spec.get("after", []):
            run_to_completion(runner, step, "step {}".format(step["name"]))
        report["phase"] = "done"
        report["ok"] = True
    except DriverError as error:
        report["failure"] = str(error)
    except Interrupted as error:
        report["failure"] = str(error)
    except Exception as error:  # Mininet raises plain Exceptions for failed links and the like
        report["failure"] = "{}: {}".format(type(error).__name__, error)
    finally:
        # Ignore further signals while tearing down: a second Ctrl-C must not leave half a network behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        runner.stop_all()
        switch_processes = [started for started in runner.started if started.name == "switch"]
        if switch_processes:
            report["switch_returncode"] = switch_processes[0].poll()
        if net is not None:
            try:
                net.stop()
            except Exception as error:
                report["ok"] = False
                report["failure"] = report["failure"] or "net.stop() failed: {}".format(error)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run a star of Mininet hosts around one P4 switch (see the module "
                                                 "docstring for the spec).")
    parser.add_argument("--spec", required=True, help="JSON spec written by omnireduce.testbed")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
    except (OSError, ValueError) as error:
        sys.stderr.write("driver: bad spec {}: {}\n".format(args.spec, error))
        return 2
    if os.geteuid() != 0:
        sys.stderr.write("driver: Mininet needs root\n")
        return 2
    try:
        import mininet.net  # noqa: F401
    except ImportError as error:
        sys.stderr.write("driver: Mininet is not importable ({}); run with Debian's /usr/bin/python3 -P\n".format(
            error))
        return 2
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    report = run(spec)
    with open(spec["report"], "w", encoding="utf-8") as stream:
        json.dump(report, stream, indent=2)
    if not report["ok"]:
        sys.stderr.write("driver: {} (phase {})\n".format(report["failure"], report["phase"]))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
