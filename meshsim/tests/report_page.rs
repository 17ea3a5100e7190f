//! The report a user opens: `meshsim run` writes report.json (valid against the committed JSON
//! Schema), summary.md, SVG and PNG plots and index.html; `meshsim report` re-renders the same
//! files from report.json; `meshsim diff` lines two runs up; and the page, loaded in a real
//! headless Chromium, shows every plot with no console errors.
//!
//! Chromium is Debian's (`apt-get install chromium`, which `.ci/run` does). Without it the
//! browser half is skipped with a message, unless `MESHSIM_REQUIRE_BROWSER` is set (as in CI),
//! in which case its absence fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

fn meshsim() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meshsim"));
    c.current_dir(workspace());
    c
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(args: &[&str]) -> String {
    let out = meshsim().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "meshsim {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const PLOTS: [&str; 6] = [
    "latency",
    "traffic",
    "amplification",
    "breakers",
    "spectrum",
    "trace",
];

#[test]
fn run_writes_the_report_report_rerenders_it_and_diff_compares() {
    let a = scratch("page-a");
    let a_s = a.to_str().unwrap();
    run(&["run", "scenarios/breaker.toml", "--out", a_s, "--quiet"]);
    for f in ["report.json", "summary.md", "index.html"] {
        assert!(a.join(f).is_file(), "{f} missing");
    }
    for p in PLOTS {
        let svg = std::fs::read_to_string(a.join("plots").join(format!("{p}.svg"))).unwrap();
        let axis = match p {
            "spectrum" => "percentile",
            "trace" => "ms after the request was sent",
            _ => "simulated time (s)",
        };
        assert!(svg.contains(axis), "{p}: no {axis} axis");
        let png = std::fs::read(a.join("plots").join(format!("{p}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{p}.png is not a PNG");
    }
    let json = std::fs::read_to_string(a.join("report.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(reports::schema::COMMITTED_REPORT_SCHEMA).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");

    // Re-rendered from report.json alone: the same summary, plots and page.
    let b = scratch("page-b");
    let out = run(&["report", a_s, "--out", b.to_str().unwrap()]);
    assert!(out.contains("index.html"), "{out}");
    for f in [
        "summary.md",
        "index.html",
        "plots/latency.svg",
        "plots/breakers.svg",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs when re-rendered"
        );
    }

    // Another seed, side by side.
    let c = scratch("page-c");
    run(&[
        "run",
        "scenarios/breaker.toml",
        "--seed",
        "30",
        "--out",
        c.to_str().unwrap(),
        "--quiet",
    ]);
    let diff = run(&["diff", a_s, c.to_str().unwrap()]);
    assert!(diff.contains("| seed | 29 | 30 |"), "{diff}");
    assert!(diff.contains("| mesh: success ratio |"), "{diff}");
    // Another seed changes measurements, not only the seed: the count of differing metrics is
    // more than zero (the diff prints "0 of N" for a run against itself).
    let changed: u64 = diff
        .lines()
        .find(|l| l.contains(" metrics differ"))
        .and_then(|l| l.split(" of ").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric count in the diff:\n{diff}"));
    assert!(changed > 0, "another seed changed no metric:\n{diff}");
    let same = run(&["diff", a_s, a_s]);
    assert!(
        same.contains("\n0 of "),
        "a run differs from itself:\n{same}"
    );

    // A file that is not a report is a clear error, not a panic.
    let bad = meshsim()
        .args(["report", "scenarios/breaker.toml"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a meshsim report"));

    browser_check(&a.join("index.html"), PLOTS.len());
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// What a headless Chromium saw: the DOM after load, and the console lines it logged.
fn load_in_chromium(
    browser: &Path,
    page: &Path,
    screenshot: Option<&Path>,
) -> (String, Vec<String>) {
    let profile = scratch(&format!(
        "chromium-profile-{}",
        page.file_stem().unwrap().to_string_lossy()
    ));
    let mut c = Command::new(browser);
    // The flags that keep Chromium from reaching for the network on a closed machine.
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1200,2400",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    match screenshot {
        Some(s) => c.arg(format!("--screenshot={}", s.display())),
        None => c.arg("--dump-dom"),
    };
    let out = c
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed: {out:?}");
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

fn browser_check(page: &Path, plots: usize) {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("MESHSIM_REQUIRE_BROWSER").is_none(),
            "MESHSIM_REQUIRE_BROWSER is set but no chromium was found"
        );
        eprintln!("SKIPPED the browser check: no chromium (apt-get install chromium)");
        return;
    };
    let html = std::fs::read_to_string(page).unwrap();
    // Self-contained: nothing the page could fetch.
    for needle in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "url(http",
        "@import",
    ] {
        assert!(
            !html.contains(needle),
            "the page fetches something: {needle}"
        );
    }
    let (dom, console) = load_in_chromium(&browser, page, None);
    assert!(console.is_empty(), "console messages: {console:?}");
    let body = dom
        .split("<body")
        .nth(1)
        .and_then(|b| b.split('>').next())
        .unwrap_or_default()
        .to_string();
    assert!(
        body.contains(&format!("data-plots=\"{plots}\""))
            && body.contains(&format!("data-plots-visible=\"{plots}\"")),
        "not every plot is visible: <body{body}>"
    );
    let shot = page.with_file_name("screenshot.png");
    load_in_chromium(&browser, page, Some(&shot));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 50_000,
        "blank screenshot?"
    );

    // The check itself can fail: a page whose plot has no size is reported.
    let broken = page.with_file_name("broken.html");
    let hidden = html.replacen(
        "<figure class=\"plot\"",
        "<figure style=\"display:none\" class=\"plot\"",
        1,
    );
    std::fs::write(&broken, hidden).unwrap();
    let (dom, console) = load_in_chromium(&browser, &broken, None);
    assert!(
        console.iter().any(|l| l.contains("plot not visible")),
        "a hidden plot went unnoticed: {console:?}"
    );
    assert!(dom.contains(&format!("data-plots-visible=\"{}\"", plots - 1)));
}
