//! Records the versions of the crates that shape a simulated run (from the workspace's Cargo.lock),
//! so every report names them and a seed can be replayed with the same build.

fn main() {
    let lock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    // A report without versions cannot be replayed faithfully: fail the build rather than
    // write an empty list.
    let text = std::fs::read_to_string(&lock).unwrap_or_else(|e| {
        panic!(
            "cannot read {} for the report's versions: {e}",
            lock.display()
        )
    });
    let wanted = ["turmoil-net", "tokio", "rand", "rand_chacha", "hyper", "h2"];
    let mut found = Vec::new();
    let mut name: Option<String> = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take())
            && wanted.contains(&n.as_str())
            && !found.iter().any(|(k, _): &(String, String)| *k == n)
        {
            found.push((n, v.trim_matches('"').to_string()));
        }
    }
    found.sort();
    let joined: Vec<String> = found.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("cargo:rustc-env=MESHSIM_DEP_VERSIONS={}", joined.join(","));
}
