// SPDX-License-Identifier: MIT OR Apache-2.0
//! The kernel capture corpus (`pcaps/kernel/`): one trial per capture. Each runs
//! `tcpao-verify --explain --json` with the capture's keys file and compares the verdict
//! totals with `NAME.expect.toml`, whose numbers come from the Linux TCP-AO kernel (both
//! peers' netns counter deltas and the segments counted on the wire), not from tcpao-verify.
//! See `pcaps/README.md` for provenance and `scripts/make-corpus.sh` to re-make it.

use std::path::{Path, PathBuf};
use std::process::Command;

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value as Json;
use toml::Value as Toml;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps/kernel")
}

fn main() {
    let args = Arguments::from_args();
    let dir = corpus_dir();
    let mut trials = Vec::new();
    let mut pcaps: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
                .collect()
        })
        .unwrap_or_default();
    pcaps.sort();
    let n = pcaps.len();
    trials.push(Trial::test("corpus/complete", move || {
        complete(&corpus_dir(), n)
    }));
    for p in pcaps {
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        trials.push(Trial::test(format!("corpus/{name}"), move || check(&p)));
    }
    libtest_mimic::run(&args, trials).exit();
}

/// The corpus exists, and every capture has its keys and expectation files.
fn complete(dir: &Path, pcaps: usize) -> Result<(), Failed> {
    if pcaps < 20 {
        return Err(format!(
            "{} holds {pcaps} captures, expected at least 20",
            dir.display()
        )
        .into());
    }
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let p = e.map_err(|e| e.to_string())?.path();
        if p.extension().is_some_and(|x| x == "pcap") {
            for ext in ["keys.toml", "expect.toml"] {
                let f = p.with_extension(ext);
                if !f.exists() {
                    return Err(format!("{} has no {}", p.display(), f.display()).into());
                }
            }
        }
    }
    Ok(())
}

fn int(v: &Toml, table: &str, key: &str) -> Result<u64, Failed> {
    v.get(table)
        .and_then(|t| t.get(key))
        .and_then(Toml::as_integer)
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| format!("expect file: [{table}] {key} is missing or not a count").into())
}

fn kernel_sum(v: &Toml, counter: &str) -> Result<u64, Failed> {
    let mut s = 0;
    for side in ["server", "client"] {
        s += v
            .get("kernel")
            .and_then(|k| k.get(side))
            .and_then(|t| t.get(counter))
            .and_then(Toml::as_integer)
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| format!("expect file: [kernel.{side}] {counter} is missing"))?;
    }
    Ok(s)
}

fn json_u64(j: &Json, key: &str) -> Result<u64, Failed> {
    j.get(key)
        .and_then(Json::as_u64)
        .ok_or_else(|| format!("tcpao-verify JSON: summary.{key} is missing").into())
}

fn check(pcap: &Path) -> Result<(), Failed> {
    let keys = pcap.with_extension("keys.toml");
    let expect_path = pcap.with_extension("expect.toml");
    let text = std::fs::read_to_string(&expect_path)
        .map_err(|e| format!("{}: {e}", expect_path.display()))?;
    let exp: Toml = toml::from_str(&text).map_err(|e| format!("{}: {e}", expect_path.display()))?;

    // 1. The [expect] table is what the kernel's numbers imply (no hand-edited totals).
    let md5_segments = int(&exp, "wire", "md5_segments")?;
    let ao_segments = int(&exp, "wire", "ao_segments")?;
    let md5_bad = kernel_sum(&exp, "TCPMD5Failure")?;
    let derived = [
        ("good", kernel_sum(&exp, "TCPAOGood")?),
        ("bad", kernel_sum(&exp, "TCPAOBad")?),
        ("key_not_found", kernel_sum(&exp, "TCPAOKeyNotFound")?),
        ("unsigned", kernel_sum(&exp, "TCPAORequired")?),
        ("unverifiable", 0),
        ("md5_good", md5_segments.saturating_sub(md5_bad)),
        ("md5_bad", md5_bad),
    ];
    for (k, v) in derived {
        let e = int(&exp, "expect", k)?;
        if e != v {
            return Err(
                format!("expect file: [expect] {k} = {e}, the kernel counters give {v}").into(),
            );
        }
    }
    let kernel_verified: u64 = derived[..3].iter().map(|(_, v)| v).sum();
    if kernel_verified != ao_segments {
        return Err(format!(
            "expect file: the kernels verified {kernel_verified} TCP-AO segments, the capture holds {ao_segments}"
        )
        .into());
    }
    let failing: u64 = derived[1..4].iter().map(|(_, v)| v).sum::<u64>() + md5_bad;
    let want_result = if failing == 0 { "pass" } else { "fail" };
    let result = exp
        .get("expect")
        .and_then(|t| t.get("result"))
        .and_then(Toml::as_str)
        .ok_or("expect file: [expect] result is missing")?;
    if result != want_result {
        return Err(
            format!("expect file: result = {result:?}, the counters give {want_result:?}").into(),
        );
    }

    // 2. tcpao-verify agrees with the kernel.
    let out = Command::new(env!("CARGO_BIN_EXE_tcpao-verify"))
        .arg("--keys")
        .arg(&keys)
        .args(["--explain", "--json"])
        .arg(pcap)
        .output()
        .map_err(|e| format!("running tcpao-verify: {e}"))?;
    let json: Json = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "tcpao-verify printed no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let summary = json
        .get("summary")
        .ok_or("tcpao-verify JSON has no summary")?;
    let mut diffs = Vec::new();
    for (k, v) in derived {
        let got = json_u64(summary, k)?;
        if got != v {
            diffs.push(format!("{k}: tcpao-verify {got}, kernel {v}"));
        }
    }
    for (k, w) in [("frames", "frames"), ("tcp_segments", "tcp_segments")] {
        let (got, want) = (json_u64(summary, k)?, int(&exp, "wire", w)?);
        if got != want {
            diffs.push(format!("{k}: tcpao-verify {got}, capture {want}"));
        }
    }
    let got_result = summary.get("result").and_then(Json::as_str).unwrap_or("?");
    if got_result != result {
        diffs.push(format!(
            "result: tcpao-verify {got_result}, kernel {result}"
        ));
    }
    let want_exit = if failing == 0 { 0 } else { 1 };
    if out.status.code() != Some(want_exit) {
        diffs.push(format!(
            "exit status {:?}, expected {want_exit}",
            out.status.code()
        ));
    }
    // 3. The misconfigured pair: --explain names the fault that was injected.
    if let Some(sentence) = exp
        .get("expect")
        .and_then(|t| t.get("explain"))
        .and_then(Toml::as_str)
    {
        let diagnoses: Vec<&str> = json
            .get("flows")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| f.get("diagnosis").and_then(Json::as_array))
            .flatten()
            .filter_map(Json::as_str)
            .collect();
        if !diagnoses.iter().any(|d| d.contains(sentence)) {
            diffs.push(format!(
                "--explain: no diagnosis contains {sentence:?}; got {diagnoses:?}"
            ));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; ").into())
    }
}
