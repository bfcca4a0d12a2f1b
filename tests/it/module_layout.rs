//! The layering of docs/design.md ("Architecture") holds on the tree as it is: no import
//! circle between modules or between the files of one module, nothing outside `cli`
//! imports `cli`, no subsystem imports the engine. `scripts/module-graph` checks it; this
//! test runs it so a change that breaks a rule fails CI, not a later review.

#[test]
fn the_module_graph_has_no_circle_and_no_arrow_pointing_up() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/module-graph");
    let out = std::process::Command::new("python3")
        .arg(script)
        .output()
        .expect("python3 runs scripts/module-graph (Debian: apt-get install python3)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "scripts/module-graph:\n{text}");
}
