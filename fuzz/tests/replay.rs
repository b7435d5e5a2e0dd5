//! Replays the committed corpus (and any crash artifacts) without libFuzzer: `cargo test`.

use std::fs;
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in [base.join("corpus").join(target), base.join("artifacts").join(target)] {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            run(&fs::read(&path).unwrap());
            n += 1;
        }
    }
    assert!(n > 0, "no inputs for {target}");
}

#[test]
fn fab_read() {
    replay("fab_read", sepal_fuzz::fab_read);
}

#[test]
fn object_decode() {
    replay("object_decode", sepal_fuzz::object_decode);
}

#[test]
fn record_convert() {
    replay("record_convert", sepal_fuzz::record_convert);
}
