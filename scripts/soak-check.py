#!/usr/bin/env python3
"""The soak's bookkeeping (scripts/soak.sh): checks each sample against the cluster's
invariants, keeps every agent process's RSS, and prints the summary. Python 3 stdlib only.

Everything it knows between two calls is in one JSON state file:

  soak-check.py init    --state S --services FILE --config FILE --period SECS --t0 EPOCH
                        --warmup SECS --window SECS --schedule SVC=SCHEDULE@EPOCH ...
  soak-check.py sample  --state S --now EPOCH --ps FILE --discovery FILE --events FILE
                        --logs DIR --rss NODE=PID:KB ...          prints one line per sample
  soak-check.py adopted --before FILE --agent FILE                 prints "k m" (adopted k of m)
  soak-check.py summary --state S --events FILE --logs DIR --docker-events FILE --minutes M
                        prints the summary, last line key=value; exits 1 on a failure

Inputs, as soak.sh writes them:
  --ps         `docker ps` of the cluster's running containers, tab-separated:
               id, service, instance, node, ports ("127.0.0.1:19510->8080/tcp")
  --discovery  `etcdctl get --prefix <root>/`: key line, value line, ...
  --events     one line per agent event: "<epoch> <kind> <node> [...]", kinds
               stop-requested <node> TERM|KILL, start <node> <pid>, up <node> <pid>,
               exit <node> <pid> <rc>, start-failed <node>, adopted <node> <k> <m>
  --logs DIR   the agents' JSON logs (node*.log), appended across restarts
"""

import argparse
import glob
import json
import os
import re
import sys

# ---------------------------------------------------------------------------------------
# state


def load(path):
    with open(path) as f:
        return json.load(f)


def save(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def parse_schedule(text):
    """'20:10s,80:30s' -> [(rate, secs), ...] as gru-loadgen reads it."""
    phases = []
    for part in text.split(","):
        rate, duration = part.split(":")
        m = re.fullmatch(r"(\d+)(ms|s|m)?", duration)
        value, unit = int(m.group(1)), m.group(2) or "s"
        secs = value / 1000 if unit == "ms" else value * 60 if unit == "m" else value
        phases.append((int(rate), secs))
    return phases


def rate_at(phases, offset):
    if offset < 0:
        return 0
    for rate, secs in phases:
        if offset < secs:
            return rate
        offset -= secs
    return 0


def cmd_init(args):
    with open(args.services) as f:
        services = json.load(f)
    with open(args.config) as f:
        config = json.load(f)
    if isinstance(services, dict):
        services = list(services.values())
    bounds = {}
    for s in services:
        bounds[s["Name"]] = [s.get("MinInstances", 0), s.get("MaxInstances")]
    ttl = config["Discovery"]["TTL"]
    loop = config["Autonomic"]["LoopTimeInterval"]
    schedules = {}
    for item in args.schedule or []:
        name, rest = item.split("=", 1)
        text, start = rest.rsplit("@", 1)
        schedules[name] = {"phases": parse_schedule(text), "start": float(start)}
    state = {
        "t0": args.t0,
        "period": args.period,
        "warmup": args.warmup,
        "window": args.window,
        "bounds": bounds,
        "ttl": ttl,
        "loop": loop,
        # A restarted agent's node is in grace from its stop request until this long
        # after it answers again: its lease must expire (kill -9), survivors may have
        # repaired the floor meanwhile, and the ceiling repair takes a loop or two.
        "grace": ttl + 2 * loop + args.period,
        "schedules": schedules,
        "deployed": False,
        "samples": 0,
        "sample_errors": 0,
        "violations": [],
        "pending": {},  # discovery mismatches seen in the previous sample
        # The docker events replayed so far: running instances and excursions out of bounds.
        "timeline": {"pos": 0, "running": {}, "count": {}, "above": {}, "below": {}},
        "excursions": [],
        "rss": {},  # pid -> {"node", "samples": [[t, kb], ...]}
    }
    save(args.state, state)


# ---------------------------------------------------------------------------------------
# inputs


def read_ps(path):
    """Running containers: list of dicts."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            cid, service, instance, node, ports = (line.split("\t") + [""] * 5)[:5]
            out.append(
                {"id": cid, "service": service, "instance": instance, "node": node, "ports": ports}
            )
    return out


def read_discovery(path, root):
    """{(service, instance): value} from etcdctl's key/value lines."""
    records = {}
    with open(path) as f:
        lines = f.read().split("\n")
    for i in range(0, len(lines) - 1, 2):
        key, value = lines[i], lines[i + 1]
        if not key.startswith(root):
            continue
        rest = key[len(root):].split("/")
        if len(rest) == 2:
            records[(rest[0], rest[1])] = value
    return records


def read_events(path, t0):
    events = []
    if not os.path.exists(path):
        return events
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                events.append([float(parts[0]) - t0] + parts[1:])
    return events


def restart_windows(events, grace):
    """node -> [(down_t, up_t or None)] from stop requests and the next `up`."""
    windows = {}
    open_down = {}
    for ev in events:
        t, kind, node = ev[0], ev[1], ev[2]
        if kind == "stop-requested":
            open_down[node] = t
        elif kind == "up" and node in open_down:
            windows.setdefault(node, []).append((open_down.pop(node), t))
    for node, t in open_down.items():
        windows.setdefault(node, []).append((t, None))
    return windows


def in_window(windows, node, t, after_up):
    for down, up in windows.get(node, []):
        if down <= t and (up is None or t <= up + after_up):
            return True
    return False


def count_actions(logs_dir):
    """Agents' executed starts and stops, by reason, from their JSON logs."""
    counts = {}
    for path in sorted(glob.glob(os.path.join(logs_dir, "node*.log"))):
        with open(path, errors="replace") as f:
            for line in f:
                if '"instance st' not in line:
                    continue
                try:
                    fields = json.loads(line).get("fields", {})
                except ValueError:
                    continue
                message = fields.get("message")
                if message in ("instance started", "instance stopped"):
                    key = ("start" if message == "instance started" else "stop") + ":" + str(
                        fields.get("why", "?")
                    )
                    counts[key] = counts.get(key, 0) + 1
    return counts


# ---------------------------------------------------------------------------------------
# the exact running count per service, from docker events


def replay(state, path, windows, t_now, problems, notes):
    """Replays the docker events not seen yet (start, die) into the running count of each
    service, checking [MinInstances, MaxInstances] at every change, and returns the peak
    count of each service since the last sample. Above MaxInstances is a violation unless
    an agent is restarting (see `grace`); below MinInstances (once every minimum was
    reached) is one when it lasts longer than TTL + 2 loops."""
    tl = state["timeline"]
    bounds, grace = state["bounds"], state["grace"]
    below_limit = state["ttl"] + 2 * state["loop"]
    count = tl["count"]
    peak = {svc: count.get(svc, 0) for svc in bounds}
    lines = []
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        complete = text[: text.rfind("\n") + 1]
        lines = complete.split("\n")[:-1]
    new, tl["pos"] = lines[tl["pos"]:], len(lines)

    def restarting(t):
        return sorted(n for n in windows if in_window(windows, n, t, grace))

    def check(service, t):
        lo, hi = bounds.get(service, [0, None])
        n = count.get(service, 0)
        if not state["deployed"] and all(count.get(s, 0) >= b[0] for s, b in bounds.items()):
            state["deployed"] = True
        for kind, out in (("above", hi is not None and n > hi), ("below", state["deployed"] and n < lo)):
            ex = tl[kind].get(service)
            if out:
                if ex is None:
                    ex = tl[kind][service] = {"since": t, "extreme": n, "graced": [], "flagged": False}
                    notes.append("t=%ds %s=%d %s %s%s" % (
                        t, service, n, "above MaxInstances" if kind == "above" else "below MinInstances",
                        hi if kind == "above" else lo,
                        " (restarting: %s)" % ",".join(restarting(t)) if restarting(t) else ""))
                ex["extreme"] = max(ex["extreme"], n) if kind == "above" else min(ex["extreme"], n)
                who = restarting(t)
                if who:
                    ex["graced"] = sorted(set(ex["graced"]) | set(who))
                elif not ex["flagged"] and (kind == "above" or t - ex["since"] > below_limit):
                    ex["flagged"] = True
                    what = "above MaxInstances %s" % hi if kind == "above" else (
                        "below MinInstances %d for more than %d s" % (lo, below_limit))
                    problems.append(("bounds", service, "%s=%d %s since t=%ds" % (service, n, what, ex["since"])))
            elif ex is not None:
                del tl[kind][service]
                state["excursions"].append([kind, service, round(ex["since"], 1), round(t - ex["since"], 3),
                                            ex["extreme"], ex["graced"], ex["flagged"]])

    for line in new:
        parts = line.split()
        if len(parts) < 4 or parts[1] not in ("start", "die"):
            continue
        t = int(parts[0]) / 1e9 - state["t0"]
        action, service, instance = parts[1], parts[2], parts[3]
        if action == "start":
            if instance in tl["running"]:
                problems.append(("duplicate", instance, "instance %s of %s started while it runs (docker events)" % (instance, service)))
            tl["running"][instance] = service
            count[service] = count.get(service, 0) + 1
        elif tl["running"].get(instance) == service:
            del tl["running"][instance]
            count[service] -= 1
        peak[service] = max(peak.get(service, 0), count[service])
        check(service, t)
    for service in bounds:
        check(service, t_now)
    return peak


# ---------------------------------------------------------------------------------------
# one sample


def cmd_sample(args):
    state = load(args.state)
    t = args.now - state["t0"]
    period = state["period"]
    state["samples"] += 1
    events = read_events(args.events, state["t0"])
    windows = restart_windows(events, state["grace"])
    restarting = sorted(n for n in windows if in_window(windows, n, t, state["grace"]))

    # RSS of every agent process, by pid (a restarted agent is a new process).
    rss_cells = []
    for item in args.rss or []:
        node, rest = item.split("=", 1)
        # PID:VmRSS[:RssAnon:RssFile] (kB): the split tells heap growth from code pages
        # touched for the first time (the binary is mapped, so its pages count once used).
        pid, kb, *split = rest.split(":")
        if kb.isdigit():
            entry = state["rss"].setdefault(pid, {"node": node, "samples": []})
            sample = [round(t, 1), int(kb)]
            if len(split) == 2 and all(x.isdigit() for x in split):
                sample += [int(split[0]), int(split[1])]
            entry["samples"].append(sample)
            rss_cells.append("%s=%dk" % (node, int(kb)))
        else:
            rss_cells.append("%s=down" % node)

    problems = []  # (kind, subject, text): violations of this sample
    ok_inputs = bool(args.ps_ok and args.discovery_ok)
    counts = {s: 0 for s in state["bounds"]}
    records = {}
    line_extra = ""
    if not ok_inputs:
        state["sample_errors"] += 1
        line_extra = " (docker or etcd did not answer: not checked)"
    else:
        containers = read_ps(args.ps)
        root = args.root.rstrip("/") + "/"
        records = read_discovery(args.discovery, root)
        for c in containers:
            counts[c["service"]] = counts.get(c["service"], 0) + 1

        # 2. No two running containers with the same instance label.
        seen = {}
        for c in containers:
            seen.setdefault(c["instance"], []).append(c["id"])
        for instance, ids in seen.items():
            if len(ids) > 1:
                problems.append(("duplicate", instance, "instance %s runs %d times: %s" % (instance, len(ids), " ".join(ids))))

        # 3. Discovery records == running containers (service, instance, host port).
        #    A mismatch must persist over two samples in a row (one sampling period), and
        #    a restarting node's containers may lack records.
        by_key = {(c["service"], c["instance"]): c for c in containers}
        mismatches = {}
        for key, value in records.items():
            c = by_key.get(key)
            if c is None:
                mismatches["stale:%s/%s" % key] = "record %s/%s -> %s has no running container" % (key + (value,))
            elif value and (value + "->") not in c["ports"]:
                mismatches["address:%s/%s" % key] = "record %s/%s -> %s but the container publishes %s" % (
                    key + (value, c["ports"] or "nothing"))
        for key, c in by_key.items():
            if key not in records and not in_window(windows, c["node"], t, period):
                mismatches["missing:%s/%s" % key] = "container %s/%s on %s has no discovery record" % (key + (c["node"],))
        for subject, text in mismatches.items():
            if subject in state["pending"]:
                problems.append(("discovery", subject, text + " (two samples in a row)"))
        state["pending"] = mismatches

    # 4. Agents: an exit nobody asked for, or a restart that did not come up.
    requested = set(state.get("stop_requested", []))
    for ev in events[state.get("events_checked", 0):]:
        kind, node = ev[1], ev[2]
        if kind == "stop-requested":
            requested.add(node)
        elif kind == "exit":
            if node not in requested:
                problems.append(("agent", node, "agent %s (pid %s) exited on its own, code %s" % (node, ev[3], ev[4])))
            requested.discard(node)
        elif kind == "start-failed":
            problems.append(("agent", node, "agent %s did not answer /healthz within 30 s of its start" % node))
    state["stop_requested"] = sorted(requested)
    state["events_checked"] = len(events)

    notes = []
    peak = replay(state, args.docker_events, windows, t, problems, notes)

    for kind, subject, text in problems:
        state["violations"].append([round(t, 1), kind, subject, text])
    save(args.state, state)

    actions = count_actions(args.logs)
    loads = []
    for name, sched in sorted(state["schedules"].items()):
        loads.append("%s=%d" % (name, rate_at(sched["phases"], args.now - sched["start"])))
    print(
        "t=%4ds  rss %s  running %s (peak %s)  records %s  load(req/s) %s  actions=%d  violations=%d%s%s"
        % (
            t,
            " ".join(rss_cells),
            " ".join("%s=%d" % (s, counts.get(s, 0)) for s in sorted(counts)),
            " ".join("%s=%d" % (s, peak.get(s, 0)) for s in sorted(peak)),
            len(records) if ok_inputs else "?",
            " ".join(loads) or "-",
            sum(actions.values()),
            len(state["violations"]),
            "  restarting=" + ",".join(restarting) if restarting else "",
            line_extra,
        )
    )
    for kind, subject, text in problems:
        print("  VIOLATION %s: %s" % (kind, text))
    for text in notes:
        print("  out of bounds: %s" % text)
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------
# adoption


def cmd_adopted(args):
    """How many of the containers that ran on the node before the restart the new agent
    lists as its instances."""
    with open(args.before) as f:
        before = [line.strip() for line in f if line.strip()]
    with open(args.agent) as f:
        view = json.load(f)
    ids = set()
    for service in view.get("services", {}).values():
        for instance in service.get("instances", []):
            ids.add(instance["id"][:12])
    with open(args.running) as f:
        still = {line.strip()[:12] for line in f if line.strip()}
    # A container stopped meanwhile (scale-in by the new agent) is not expected to be held.
    expected = [b[:12] for b in before if b[:12] in still]
    adopted = [b for b in expected if b in ids]
    print(len(adopted), len(expected))


# ---------------------------------------------------------------------------------------
# summary


def mean(xs):
    return sum(xs) / len(xs) if xs else 0.0


def growth(samples):
    """Percent change from the mean of the first 3 samples to the mean of the last 3."""
    first = mean([s[1] for s in samples[:3]])
    last = mean([s[1] for s in samples[-3:]])
    return 100.0 * (last - first) / first if first else 0.0


def cmd_summary(args):
    state = load(args.state)
    period, warmup = state["period"], state["warmup"]
    events = read_events(args.events, state["t0"])
    starts = {}  # pid -> start t
    for ev in events:
        if ev[1] == "start":
            starts[ev[3]] = ev[0]
    all_samples = [s for e in state["rss"].values() for s in e["samples"]]
    end = max((t for t, *_ in all_samples), default=0.0)
    w0 = end - state["window"]

    print("")
    print("RSS per agent process (kB; warm = from %d s after its start)" % warmup)
    print("  %-6s %-8s %8s %8s %8s %8s %8s  %s" % ("node", "pid", "start", "end", "first", "last", "max", "growth over its warm life"))
    covering = []
    for pid, e in sorted(state["rss"].items(), key=lambda kv: (kv[1]["node"], starts.get(kv[0], -1e9))):
        samples = e["samples"]
        start = starts.get(pid, samples[0][0] if samples else 0)
        warm = [s for s in samples if s[0] >= start + warmup]
        g = "%+.1f%% (%d samples)" % (growth(warm), len(warm)) if len(warm) >= 6 else "too short"
        print(
            "  %-6s %-8s %7ds %7ds %8d %8d %8d  %s"
            % (e["node"], pid, start, samples[-1][0], samples[0][1], samples[-1][1], max(x[1] for x in samples), g)
        )
        # The acceptance figure: processes that ran through the whole window, warm at its start.
        # Samples come every `period` s give or take a second (a sample takes time): the
        # window's first sample is the one nearest its start.
        window_samples = [s for s in samples if s[0] >= w0 - period / 2]
        if (samples[-1][0] >= end - 0.5 and start <= w0 - warmup and window_samples
                and window_samples[0][0] <= w0 + period / 2):
            covering.append((e["node"], pid, growth(window_samples), window_samples))
    print("")
    if covering:
        for node, pid, g, s in covering:
            print(
                "window %d-%d s: %s (pid %s) %d kB -> %d kB (means of first/last 3 samples): %+.2f%%"
                % (w0, end, node, pid, mean([x[1] for x in s[:3]]), mean([x[1] for x in s[-3:]]), g)
            )
            parts = [x for x in s if len(x) >= 4]
            if len(parts) >= 6:
                print(
                    "  of which anonymous (heap, stacks) %d -> %d kB, file-backed (the binary's pages) %d -> %d kB"
                    % (mean([x[2] for x in parts[:3]]), mean([x[2] for x in parts[-3:]]),
                       mean([x[3] for x in parts[:3]]), mean([x[3] for x in parts[-3:]]))
                )
        rss_growth = max(g for _, _, g, _ in covering)
        rss_text = "%.2f" % rss_growth
    else:
        print("window %d-%d s: no agent process ran through it warm; no RSS figure" % (w0, end))
        rss_growth, rss_text = None, "na"

    actions = count_actions(args.logs)
    total_actions = sum(actions.values())
    print("actions (agents' logs, instance started/stopped by reason): %d  %s"
          % (total_actions, " ".join("%s=%d" % kv for kv in sorted(actions.items()))))
    docker = {"start": 0, "destroy": 0}
    if os.path.exists(args.docker_events):
        with open(args.docker_events) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[1] in docker:
                    docker[parts[1]] += 1
    print("docker events of the cluster's containers: start=%d destroy=%d" % (docker["start"], docker["destroy"]))

    restarts = [ev for ev in events if ev[1] == "stop-requested"]
    kinds = {}
    for ev in restarts:
        kinds[ev[3]] = kinds.get(ev[3], 0) + 1
    ups = {}
    downs = {}
    for ev in events:
        if ev[1] == "stop-requested":
            downs[ev[2]] = ev[0]
        elif ev[1] == "up" and ev[2] in downs:
            ups.setdefault(ev[2], []).append(ev[0] - downs.pop(ev[2]))
    print("restarts: %d (%s); back up after %s s"
          % (len(restarts), " ".join("%s=%d" % kv for kv in sorted(kinds.items())) or "none",
             ", ".join("%.1f" % d for v in ups.values() for d in v) or "-"))
    adoption_failures = 0
    for ev in events:
        if ev[1] == "adopted":
            k, m = int(ev[3]), int(ev[4])
            print("  %s restarted at %ds: adopted %d of its %d running containers" % (ev[2], ev[0], k, m))
            if k != m:
                adoption_failures += 1
                state["violations"].append([ev[0], "adoption", ev[2], "%s adopted %d of %d containers" % (ev[2], k, m)])

    excursions = state["excursions"] + [
        [kind, svc, round(ex["since"], 1), None, ex["extreme"], ex["graced"], ex["flagged"]]
        for kind in ("above", "below") for svc, ex in state["timeline"][kind].items()]
    print("out of bounds (running containers from docker events; tolerated while an agent restarts: "
          "from its stop request until %d s = TTL + 2 loops + 1 period after it is up): %d" % (state["grace"], len(excursions)))
    for kind, svc, since, duration, extreme, graced, flagged in excursions:
        lo, hi = state["bounds"][svc]
        print("  t=%ds %s=%d %s for %s%s -> %s" % (
            since, svc, extreme, "above MaxInstances %s" % hi if kind == "above" else "below MinInstances %d" % lo,
            "%.2f s" % duration if duration is not None else "the rest of the run",
            " during the restart of %s" % ",".join(graced) if graced else "",
            "VIOLATION" if flagged else "tolerated"))
    violations = state["violations"]
    print("samples: %d (%d not checked: docker or etcd did not answer)" % (state["samples"], state["sample_errors"]))
    print("invariant violations: %d" % len(violations))
    for t, kind, _, text in violations[:20]:
        print("  t=%ds %s: %s" % (t, kind, text))

    lost, cut = lost_containers(args.docker_events, args.logs, events, state["t0"])
    if cut:
        print("stops in flight (their agent logged `stopping instance`, or was killed by the soak just after the SIGTERM), not logged as done: %d" % len(cut))
        for instance, service, node in cut[:20]:
            print("  %s instance %s on %s" % (service, instance, node))
    print("lost (died though no agent stopped them and the chaos did not kill them): %d" % len(lost))
    for instance, service, node in lost[:20]:
        print("  %s instance %s on %s" % (service, instance, node))
    duplicates = sum(1 for v in violations if v[1] == "duplicate")

    # Runs of 30 minutes or more are the acceptance runs: a tighter bound on memory growth.
    rss_bound = 2.0 if float(args.minutes) >= 30 else 5.0
    failed = len(violations) > 0 or len(lost) > 0 or rss_growth is None or rss_growth >= rss_bound
    print(
        "rss_growth_pct=%s violations=%d actions=%d restarts=%d minutes=%s samples=%d out_of_bounds=%d "
        "docker_starts=%d docker_destroys=%d result=%s"
        % (rss_text, len(violations), total_actions, len(restarts), args.minutes, state["samples"], len(excursions),
           docker["start"], docker["destroy"], "fail" if failed else "ok")
    )
    print("violations=%d lost=%d duplicates=%d rss_growth_pct=%s" % (len(violations), len(lost), duplicates, rss_text))
    return 1 if failed else 0


# A graceful stop (the engine's `kill` with SIGTERM: a `docker stop`, which in the soak only
# the agents ask for) of a container whose node's agent the soak stopped within this many
# seconds after it: the agent was stopping it when it was killed, so it never logged it.
STOP_CUT_SECS = 10.0


def lost_containers(docker_events, logs_dir, events, t0):
    """([(instance, service, node)] lost, [...] cut): the containers that died (docker `die`)
    though no agent logged `instance stopped` for them and the chaos did not kill them
    (`chaos-kill` events). Those an agent logged `stopping instance` for (its intent, logged
    before it asks the engine), or, in logs from before that line, that were stopped
    gracefully (SIGTERM) just before the soak killed their node's agent, are `cut` (a stop
    in flight, its confirmation never logged), not lost."""
    stopped, stopping = set(), set()
    for path in sorted(glob.glob(os.path.join(logs_dir, "node*.log"))):
        with open(path, errors="replace") as f:
            for line in f:
                if '"instance stopped"' not in line and '"stopping instance"' not in line:
                    continue
                try:
                    fields = json.loads(line).get("fields", {})
                except ValueError:
                    continue
                if fields.get("instance"):
                    done = fields.get("message") == "instance stopped"
                    (stopped if done else stopping).add(str(fields["instance"]))
    killed = {ev[2] for ev in events if ev[1] == "chaos-kill"}
    lost = []
    seen = set()
    # What the engine said about each instance's end: its kill signals, an OOM kill, the
    # exit code (`exit=`, `signal=` fields; absent in logs of older runs).
    ends = {}
    if os.path.exists(docker_events):
        with open(docker_events) as f:
            lines = [line.split() for line in f]
        for parts in lines:
            # <ns> <action> <service> <instance> <node> [exit=<code> signal=<n>]
            if len(parts) >= 5 and parts[1] in ("kill", "oom", "die"):
                detail = " ".join(p for p in parts[5:] if not p.endswith("="))
                ends.setdefault(parts[3], []).append((parts[1] + " " + detail).strip())
        # When each node's agent was stopped by the soak (absolute seconds).
        agent_stops = [(ev[0] + t0, ev[2]) for ev in events if ev[1] == "stop-requested" and len(ev) >= 3]
        term_at = {}  # instance -> when the engine sent it SIGTERM
        for parts in lines:
            if len(parts) >= 5 and parts[1] == "kill" and "signal=15" in parts[5:]:
                term_at.setdefault(parts[3], int(parts[0]) / 1e9)
        cut = []
        for parts in lines:
            if len(parts) >= 5 and parts[1] == "die":
                instance = parts[3]
                if instance not in stopped and instance not in killed and instance not in seen:
                    seen.add(instance)
                    entry = (instance, parts[2], parts[4] + " (" + ", ".join(ends.get(instance, [])) + ")")
                    term = term_at.get(instance)
                    if instance in stopping or (term is not None and any(
                        node == parts[4] and term <= at <= term + STOP_CUT_SECS for at, node in agent_stops
                    )):
                        cut.append(entry)
                    else:
                        lost.append(entry)
        return lost, cut
    return lost, []


def cmd_selftest(_args):
    """Checks how `lost_containers` sorts deaths, on made-up logs (run by scripts/test.sh)."""
    import tempfile

    t0 = 1000.0
    ns = lambda secs: "%d" % int((t0 + secs) * 1e9)  # noqa: E731
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "node1.log"), "w") as f:
            f.write(json.dumps({"fields": {"message": "instance stopped", "instance": "logged"}}) + "\n")
            f.write(json.dumps({"fields": {"message": "stopping instance", "instance": "intent"}}) + "\n")
        with open(os.path.join(d, "docker-events"), "w") as f:
            for line in [
                # stopped by its agent, which logged it
                (ns(10), "kill", "web", "logged", "node1", "exit=", "signal=15"),
                (ns(11), "die", "web", "logged", "node1", "exit=0", "signal="),
                # killed by the chaos
                (ns(20), "kill", "web", "chaos", "node2", "exit=", "signal=9"),
                (ns(20.1), "die", "web", "chaos", "node2", "exit=137", "signal="),
                # a graceful stop, then the soak kills node3's agent 0.3 s later: cut
                (ns(30), "kill", "web", "cut", "node3", "exit=", "signal=15"),
                (ns(32), "die", "web", "cut", "node3", "exit=0", "signal="),
                # the same on node2, whose agent was not stopped: lost
                (ns(40), "kill", "web", "term-no-kill", "node2", "exit=", "signal=15"),
                (ns(42), "die", "web", "term-no-kill", "node2", "exit=0", "signal="),
                # a graceful stop 12 s before its agent is killed: too early to be cut, lost
                (ns(50), "kill", "api", "early", "node3", "exit=", "signal=15"),
                (ns(51), "die", "api", "early", "node3", "exit=0", "signal="),
                # its agent logged the intent, not the stop, and was never killed: cut
                (ns(60), "kill", "web", "intent", "node1", "exit=", "signal=15"),
                (ns(61), "die", "web", "intent", "node1", "exit=0", "signal="),
                # died on its own
                (ns(70), "die", "api", "crashed", "node1", "exit=1", "signal="),
            ]:
                f.write(" ".join(line) + "\n")
        events = [[20.0, "chaos-kill", "chaos"], [30.3, "stop-requested", "node3", "KILL"],
                  [62.0, "stop-requested", "node3", "TERM"]]
        lost, cut = lost_containers(os.path.join(d, "docker-events"), d, events, t0)
    got = ([e[0] for e in lost], [e[0] for e in cut])
    want = (["term-no-kill", "early", "crashed"], ["cut", "intent"])
    if got != want:
        print("selftest failed: (lost, cut) = %r, expected %r" % (got, want))
        return 1
    print("soak-check selftest: ok (lost %s, cut %s)" % want)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    i = sub.add_parser("init")
    i.add_argument("--state", required=True)
    i.add_argument("--services", required=True)
    i.add_argument("--config", required=True)
    i.add_argument("--period", type=float, required=True)
    i.add_argument("--t0", type=float, required=True)
    i.add_argument("--warmup", type=float, default=60)
    i.add_argument("--window", type=float, required=True)
    i.add_argument("--schedule", action="append")

    s = sub.add_parser("sample")
    s.add_argument("--state", required=True)
    s.add_argument("--now", type=float, required=True)
    s.add_argument("--ps", required=True)
    s.add_argument("--ps-ok", type=int, default=1)
    s.add_argument("--discovery", required=True)
    s.add_argument("--discovery-ok", type=int, default=1)
    s.add_argument("--root", required=True)
    s.add_argument("--events", required=True)
    s.add_argument("--docker-events", required=True)
    s.add_argument("--logs", required=True)
    s.add_argument("--rss", nargs="*")

    a = sub.add_parser("adopted")
    a.add_argument("--before", required=True)
    a.add_argument("--agent", required=True)
    a.add_argument("--running", required=True)

    m = sub.add_parser("summary")
    m.add_argument("--state", required=True)
    m.add_argument("--events", required=True)
    m.add_argument("--logs", required=True)
    m.add_argument("--docker-events", required=True)
    m.add_argument("--minutes", required=True)

    sub.add_parser("selftest")

    args = p.parse_args()
    if args.cmd == "selftest":
        sys.exit(cmd_selftest(args))
    if args.cmd == "init":
        cmd_init(args)
    elif args.cmd == "sample":
        cmd_sample(args)
    elif args.cmd == "adopted":
        cmd_adopted(args)
    else:
        sys.exit(cmd_summary(args))


if __name__ == "__main__":
    main()
