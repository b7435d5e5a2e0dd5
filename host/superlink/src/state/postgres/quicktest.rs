// TEMPORARY, not committed.
use std::cell::Cell;
use std::process::Command;

#[test]
fn quick_suite() {
    let Ok(base) = std::env::var("QPG") else { return };
    let n = Cell::new(0);
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    crate::state::conformance::run_all(&|| {
        n.set(n.get() + 1);
        let name = format!("q{stamp}_{}", n.get());
        let out = Command::new("/usr/lib/postgresql/15/bin/psql")
            .args(["-h", "127.0.0.1", "-p", "55432", "-U", "fl", "-d", "postgres", "-c", &format!("CREATE DATABASE {name}")])
            .output()
            .unwrap();
        assert!(out.status.success());
        eprintln!("check {}", n.get());
        Box::new(super::PgState::open(&format!("{base}/{name}")).unwrap())
    });
}
