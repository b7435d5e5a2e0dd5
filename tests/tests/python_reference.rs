//! The all-Python reference: Flower 1.20.0's SuperLink, SuperNodes and apps, driven by the
//! `flwr` CLI through the harness. These pin what the example prints on real Flower, and
//! prove the harness itself, before any Sepal component is involved.

use sepal_tests::{python_reference_final, scenarios, Federation, Isolation, EXPECTED_FINAL_2_ROUNDS};

#[test]
fn python_subprocess_two_rounds() {
    let fed = Federation::python(2, Isolation::Subprocess).unwrap();
    let fin = scenarios::two_rounds(&fed).unwrap();
    assert_eq!(fin, EXPECTED_FINAL_2_ROUNDS);
}

#[test]
fn python_process_isolation_two_rounds() {
    let fed = Federation::python(2, Isolation::Process).unwrap();
    let fin = scenarios::two_rounds(&fed).unwrap();
    assert_eq!(fin, EXPECTED_FINAL_2_ROUNDS);
}

#[test]
fn python_cli_ls_log_stop() {
    let fed = Federation::python(2, Isolation::Subprocess).unwrap();
    scenarios::ls_log_stop(&fed).unwrap();
}

#[test]
fn python_reference_helper_returns_final_line() {
    assert_eq!(python_reference_final().unwrap(), EXPECTED_FINAL_2_ROUNDS);
}
