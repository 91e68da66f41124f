//! The soak's verdict: which failures the faults explain and which they do not, writes
//! lost or doubled, rate-limit accuracy, the replicas' memory and descriptors over time,
//! and latency during each fault.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Value, json};

use crate::faults::{Fault, Window};
use crate::load::{Ack, Kind, Ledger, ROUND_LIMIT, Record, Round};

/// One reading of a replica's resources.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at: u64,
    pub replica: usize,
    pub incarnation: u32,
    pub rss_kb: u64,
    pub fds: u64,
}

/// A process's resident memory (kB) and open descriptors, from `/proc`.
pub fn read_proc(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

/// How long after a fault's window its effects may still be seen (ms): the breaker stays
/// open 10 s after the backend's last failure, and a replica learns within a second or two
/// that Redis or PostgreSQL is back.
fn slack(fault: Fault) -> u64 {
    match fault {
        Fault::BackendDown => 13_000,
        Fault::PostgresRestart | Fault::RedisRestart => 3_000,
        Fault::ReplicaKill | Fault::NetworkSlow => 1_000,
    }
}

fn overlaps(record: &Record, window: &Window) -> bool {
    record.start <= window.end + slack(window.fault) && record.end >= window.start
}

/// Whether a record is what its kind should give when nothing fails.
fn succeeded(record: &Record) -> bool {
    match (record.kind, record.status) {
        (Kind::Flaky, _) => record.problem.as_deref() != Some("internal"),
        (Kind::Post, Some(201)) | (Kind::Admin, Some(201 | 204)) => true,
        (Kind::RevokedKey, Some(401)) | (Kind::Limited, Some(429)) => true,
        (Kind::RevokedKey | Kind::Post | Kind::Admin, _) => false,
        (_, Some(200)) => true,
        _ => false,
    }
}

/// The fault that explains a failed record, if one does.
fn explained_by(record: &Record, windows: &[Window]) -> Option<Fault> {
    let problem = record.problem.as_deref();
    windows
        .iter()
        .filter(|w| overlaps(record, w))
        .find(|w| match w.fault {
            // A request in flight on the killed replica, or sent to it while it restarts.
            Fault::ReplicaKill => record.replica == 1 && record.error.is_some(),
            // The remote backend's calls and the view that needs it fail while it is down
            // and while its breaker stays open.
            Fault::BackendDown => {
                matches!(record.kind, Kind::Remote | Kind::View)
                    && matches!(
                        problem,
                        Some(
                            "upstream-unreachable"
                                | "upstream-timeout"
                                | "upstream-invalid"
                                | "circuit-open"
                                | "view-step-failed"
                        )
                    )
            }
            // Admin writes, keys a replica has not seen yet and token refreshes need the
            // store. A key deleted just before the outage may still be admitted by a
            // replica that knew it (docs/reliability.md). Calls with known keys must not
            // fail: their client and connection stand in.
            Fault::PostgresRestart => match record.kind {
                Kind::Admin | Kind::NewKey | Kind::Oauth | Kind::Limited => {
                    problem == Some("store-unavailable")
                }
                Kind::RevokedKey => {
                    record.status == Some(200) || problem == Some("store-unavailable")
                }
                _ => false,
            },
            // Cache and limits fail open: nothing may fail.
            Fault::RedisRestart | Fault::NetworkSlow => false,
        })
        .map(|w| w.fault)
}

/// Writes whose fate the store contradicts.
#[derive(Debug, Default, Serialize)]
pub struct Audit {
    pub acknowledged_creates: usize,
    pub acknowledged_deletes: usize,
    pub unacknowledged: usize,
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    pub resurrected: Vec<String>,
    /// Refused (an error answer) yet stored: worth knowing, not a loss.
    pub refused_but_stored: Vec<String>,
}

/// Checks the ledger against the names each replica lists: `connections[r]` and
/// `clients[r]` are replica r's answers to `GET /api/v1/connections` and `/clients`.
pub fn audit(ledger: &Ledger, connections: &[Vec<String>], clients: &[Vec<String>]) -> Audit {
    let mut audit = Audit::default();
    for (writes, listings) in [
        (&ledger.connections, connections),
        (&ledger.clients, clients),
    ] {
        for listing in listings {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for name in listing {
                *counts.entry(name.as_str()).or_default() += 1;
            }
            for write in writes.iter() {
                let n = counts.get(write.name.as_str()).copied().unwrap_or(0);
                if n > 1 {
                    audit.duplicated.push(write.name.clone());
                }
                match (write.created, write.deleted) {
                    (Ack::Yes, None | Some(Ack::Refused)) if n == 0 => {
                        audit.lost.push(write.name.clone());
                    }
                    (Ack::Yes, Some(Ack::Yes)) if n > 0 => {
                        audit.resurrected.push(write.name.clone());
                    }
                    (Ack::Refused, None) if n > 0 => {
                        audit.refused_but_stored.push(write.name.clone());
                    }
                    _ => {}
                }
            }
        }
        audit.acknowledged_creates += writes.iter().filter(|w| w.created == Ack::Yes).count();
        audit.acknowledged_deletes += writes
            .iter()
            .filter(|w| w.deleted == Some(Ack::Yes))
            .count();
        audit.unacknowledged += writes
            .iter()
            .filter(|w| w.created == Ack::Unknown || w.deleted == Some(Ack::Unknown))
            .count();
    }
    for list in [
        &mut audit.lost,
        &mut audit.duplicated,
        &mut audit.resurrected,
        &mut audit.refused_but_stored,
    ] {
        list.sort();
        list.dedup();
    }
    audit
}

/// Everything the soak measured.
#[derive(Debug)]
pub struct Inputs {
    pub seconds: u64,
    pub warm_up: u64,
    pub records: Vec<Record>,
    pub windows: Vec<Window>,
    pub rounds: Vec<Round>,
    pub samples: Vec<Sample>,
    pub audit: Audit,
    pub died: Vec<String>,
    pub tokens_issued: u64,
    pub tokens_refused: u64,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The report as JSON, and the failures that fail the run.
pub fn judge(inputs: &Inputs) -> (Value, Vec<String>) {
    let mut failures = Vec::new();
    let mut by_outcome: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut explained: BTreeMap<String, u64> = BTreeMap::new();
    let mut unexpected = Vec::new();
    for record in &inputs.records {
        let outcome = match (&record.problem, &record.error, record.status) {
            (Some(problem), _, _) => problem.clone(),
            (None, Some(error), _) => error.split(':').next().unwrap_or("transport").to_owned(),
            (None, None, Some(status)) => format!("HTTP {status}"),
            (None, None, None) => "none".into(),
        };
        *by_outcome.entry(outcome).or_default() += 1;
        let kind = serde_json::to_value(record.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let entry = by_kind.entry(kind).or_default();
        entry.0 += 1;
        if succeeded(record) {
            entry.1 += 1;
        } else if let Some(fault) = explained_by(record, &inputs.windows) {
            *explained.entry(format!("{fault:?}")).or_default() += 1;
        } else {
            unexpected.push(record.clone());
        }
    }
    if !unexpected.is_empty() {
        failures.push(format!("{} unexpected errors", unexpected.len()));
    }
    let audit = &inputs.audit;
    if !audit.lost.is_empty() || !audit.duplicated.is_empty() || !audit.resurrected.is_empty() {
        failures.push(format!(
            "writes: {} lost, {} duplicated, {} deleted yet present",
            audit.lost.len(),
            audit.duplicated.len(),
            audit.resurrected.len()
        ));
    }
    // Rounds that overlap a Redis outage are not judged: limits fail open by design.
    let mut judged = 0;
    let mut rounds = Vec::new();
    for round in &inputs.rounds {
        let redis = inputs.windows.iter().any(|w| {
            w.fault == Fault::RedisRestart
                && round.start <= w.end + slack(w.fault)
                && round.end >= w.start
        });
        let off = round.admitted.abs_diff(ROUND_LIMIT);
        if !redis {
            judged += 1;
            if off > 1 || round.other > 0 {
                failures.push(format!(
                    "rate round {}: {} admitted of {} allowed ({} other answers)",
                    round.n, round.admitted, ROUND_LIMIT, round.other
                ));
            }
        }
        rounds.push(
            json!({"n": round.n, "admitted": round.admitted, "limited": round.limited,
            "other": round.other, "judged": !redis}),
        );
    }
    if judged == 0 {
        failures.push("no rate-limit round could be judged".into());
    }
    for died in &inputs.died {
        failures.push(format!("a process died unasked: {died}"));
    }
    let growth = resource_growth(&inputs.samples, inputs.warm_up);
    for (what, grew) in &growth {
        if *grew {
            failures.push(format!("resource growth: {what}"));
        }
    }
    let latency = latency_by_window(&inputs.records, &inputs.windows);
    let answered = inputs.records.iter().filter(|r| r.status.is_some()).count();
    let report = json!({
        "seconds": inputs.seconds,
        "requests": {"sent": inputs.records.len(), "answered": answered},
        "outcomes": by_outcome,
        "kinds": by_kind.iter().map(|(k, (n, ok))| (k.clone(), json!({"sent": n, "succeeded": ok})))
            .collect::<serde_json::Map<_, _>>(),
        "explained_by_fault": explained,
        "unexpected": unexpected,
        "faults": inputs.windows,
        "writes": audit,
        "rate_rounds": rounds,
        "resources": summarize_samples(&inputs.samples),
        "latency_ms": latency,
        "oauth": {"tokens_issued": inputs.tokens_issued, "api_refusals": inputs.tokens_refused},
        "failures": failures,
    });
    (report, failures)
}

/// p50 and p99 of the healthy kinds' requests (not the flaky backend's) started in each
/// fault's window, and outside every window.
fn latency_by_window(records: &[Record], windows: &[Window]) -> Value {
    let healthy = |r: &&Record| !matches!(r.kind, Kind::Flaky | Kind::Limited);
    let stats = |mut values: Vec<u64>| {
        values.sort_unstable();
        json!({"requests": values.len(), "p50": percentile(&values, 0.5),
               "p99": percentile(&values, 0.99)})
    };
    let mut out = serde_json::Map::new();
    let outside: Vec<u64> = records
        .iter()
        .filter(healthy)
        .filter(|r| !windows.iter().any(|w| overlaps(r, w)))
        .map(|r| r.end - r.start)
        .collect();
    out.insert("no fault".into(), stats(outside));
    let mut per_fault: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for window in windows {
        per_fault
            .entry(format!("{:?}", window.fault))
            .or_default()
            .extend(
                records
                    .iter()
                    .filter(healthy)
                    .filter(|r| r.start >= window.start && r.start <= window.end)
                    .map(|r| r.end - r.start),
            );
    }
    for (fault, values) in per_fault {
        out.insert(fault, stats(values));
    }
    Value::Object(out)
}

/// Per replica incarnation, samples after warm-up (and 20 s after a restart): the first
/// and last third's medians. Memory may grow by half plus 32 MB, descriptors by 64.
fn resource_growth(samples: &[Sample], warm_up: u64) -> Vec<(String, bool)> {
    let mut groups: BTreeMap<(usize, u32), Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        groups
            .entry((s.replica, s.incarnation))
            .or_default()
            .push(s);
    }
    let mut out = Vec::new();
    for ((replica, incarnation), group) in groups {
        let born = group.first().map_or(0, |s| s.at);
        let settled: Vec<&Sample> = group
            .into_iter()
            .filter(|s| s.at >= warm_up.max(born + 20_000))
            .collect();
        if settled.len() < 6 {
            continue;
        }
        let third = settled.len() / 3;
        let median = |part: &[&Sample], f: fn(&Sample) -> u64| {
            let mut v: Vec<u64> = part.iter().map(|s| f(s)).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        let first = &settled[..third];
        let last = &settled[settled.len() - third..];
        let (rss0, rss1) = (median(first, |s| s.rss_kb), median(last, |s| s.rss_kb));
        let (fd0, fd1) = (median(first, |s| s.fds), median(last, |s| s.fds));
        let name = if replica == 0 { "A" } else { "B" };
        out.push((
            format!("replica {name}#{incarnation} RSS {rss0} kB -> {rss1} kB"),
            rss1 > rss0 + rss0 / 2 + 32 * 1024,
        ));
        out.push((
            format!("replica {name}#{incarnation} descriptors {fd0} -> {fd1}"),
            fd1 > fd0 + 64,
        ));
    }
    out
}

/// Per replica incarnation: first, smallest, largest and last RSS and descriptor counts.
fn summarize_samples(samples: &[Sample]) -> Value {
    let mut groups: BTreeMap<String, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        let name = if s.replica == 0 { "A" } else { "B" };
        groups
            .entry(format!("{name}#{}", s.incarnation))
            .or_default()
            .push(s);
    }
    let mut out = serde_json::Map::new();
    for (name, group) in groups {
        let rss: Vec<u64> = group.iter().map(|s| s.rss_kb).collect();
        let fds: Vec<u64> = group.iter().map(|s| s.fds).collect();
        let span = |v: &[u64]| json!({"first": v.first(), "min": v.iter().min(), "max": v.iter().max(), "last": v.last()});
        out.insert(
            name,
            json!({"samples": group.len(), "from_s": group.first().map(|s| s.at / 1000),
                   "to_s": group.last().map(|s| s.at / 1000),
                   "rss_kb": span(&rss), "fds": span(&fds)}),
        );
    }
    Value::Object(out)
}

/// The report as Markdown, for docs/reliability.md and the terminal.
pub fn markdown(report: &Value) -> String {
    let mut out = String::new();
    let r = report;
    out.push_str(&format!(
        "{} s; {} requests sent, {} answered.\n\n",
        r["seconds"], r["requests"]["sent"], r["requests"]["answered"]
    ));
    out.push_str("| kind | sent | succeeded |\n|---|---:|---:|\n");
    if let Some(kinds) = r["kinds"].as_object() {
        for (kind, v) in kinds {
            out.push_str(&format!(
                "| {kind} | {} | {} |\n",
                v["sent"], v["succeeded"]
            ));
        }
    }
    out.push_str("\n| outcome | requests |\n|---|---:|\n");
    if let Some(outcomes) = r["outcomes"].as_object() {
        for (outcome, n) in outcomes {
            out.push_str(&format!("| {outcome} | {n} |\n"));
        }
    }
    out.push_str(&format!(
        "\nFailures explained by a fault: {}\n\nUnexpected errors: {}\n\n",
        r["explained_by_fault"],
        r["unexpected"].as_array().map_or(0, Vec::len)
    ));
    out.push_str("| fault | at (s) | lasted (s) |\n|---|---:|---:|\n");
    for w in r["faults"].as_array().into_iter().flatten() {
        let start = w["start"].as_u64().unwrap_or(0);
        let end = w["end"].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "| {} | {:.1} | {:.1} |\n",
            w["fault"].as_str().unwrap_or(""),
            start as f64 / 1000.0,
            end.saturating_sub(start) as f64 / 1000.0
        ));
    }
    out.push_str("\n| latency window | requests | p50 ms | p99 ms |\n|---|---:|---:|---:|\n");
    if let Some(latency) = r["latency_ms"].as_object() {
        for (window, v) in latency {
            out.push_str(&format!(
                "| {window} | {} | {} | {} |\n",
                v["requests"], v["p50"], v["p99"]
            ));
        }
    }
    let w = &r["writes"];
    out.push_str(&format!(
        "\nWrites: {} creates and {} deletes acknowledged, {} unanswered; lost {}, duplicated {}, deleted yet present {}, refused yet stored {}.\n",
        w["acknowledged_creates"],
        w["acknowledged_deletes"],
        w["unacknowledged"],
        w["lost"].as_array().map_or(0, Vec::len),
        w["duplicated"].as_array().map_or(0, Vec::len),
        w["resurrected"].as_array().map_or(0, Vec::len),
        w["refused_but_stored"].as_array().map_or(0, Vec::len),
    ));
    let rounds = r["rate_rounds"].as_array().cloned().unwrap_or_default();
    let admitted: Vec<String> = rounds
        .iter()
        .map(|x| {
            let mark = if x["judged"].as_bool() == Some(true) {
                ""
            } else {
                "*"
            };
            format!("{}{mark}", x["admitted"])
        })
        .collect();
    out.push_str(&format!(
        "\nRate-limit rounds (limit {ROUND_LIMIT}, 60 calls over both replicas; * = during a Redis outage, not judged): admitted {}.\n",
        admitted.join(", ")
    ));
    out.push_str("\n| replica | samples | RSS first / max / last (MB) | descriptors first / max / last |\n|---|---:|---|---|\n");
    if let Some(resources) = r["resources"].as_object() {
        for (name, v) in resources {
            let mb = |x: &Value| x.as_u64().map_or(0.0, |kb| kb as f64 / 1024.0);
            out.push_str(&format!(
                "| {name} ({}–{} s) | {} | {:.1} / {:.1} / {:.1} | {} / {} / {} |\n",
                v["from_s"],
                v["to_s"],
                v["samples"],
                mb(&v["rss_kb"]["first"]),
                mb(&v["rss_kb"]["max"]),
                mb(&v["rss_kb"]["last"]),
                v["fds"]["first"],
                v["fds"]["max"],
                v["fds"]["last"]
            ));
        }
    }
    out.push_str(&format!(
        "\nOAuth: {} tokens issued (client credentials, {} s each), {} API calls refused for an expired token.\n",
        r["oauth"]["tokens_issued"],
        crate::backends::TOKEN_SECONDS,
        r["oauth"]["api_refusals"]
    ));
    let failures = r["failures"].as_array().cloned().unwrap_or_default();
    if failures.is_empty() {
        out.push_str("\nVerdict: pass.\n");
    } else {
        out.push_str("\nVerdict: FAIL\n");
        for f in failures {
            out.push_str(&format!("- {}\n", f.as_str().unwrap_or("")));
        }
    }
    out
}
