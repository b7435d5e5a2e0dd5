//! Run logs: what is returned after a stamp, and in what order.

use super::{new_run, Factory};
use crate::state::StateError;

pub(super) fn logs_are_returned_after_a_stamp(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    assert_eq!(state.logs_after(run_id, 0.0).unwrap(), (String::new(), 0.0));
    state.add_log(run_id, "one\n").unwrap();
    state.add_log(run_id, "two\n").unwrap();
    let (text, latest) = state.logs_after(run_id, 0.0).unwrap();
    assert_eq!(text, "one\ntwo\n");
    state.add_log(run_id, "three\n").unwrap();
    let (text, latest2) = state.logs_after(run_id, latest).unwrap();
    assert_eq!(text, "three\n");
    assert!(latest2 > latest);
    assert!(matches!(state.add_log(777, "x"), Err(StateError::RunNotFound(777))));
}

pub(super) fn logs_keep_order_across_many_entries(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    let other = new_run(&*state);
    let lines: Vec<String> = (0..300).map(|i| format!("line {i} ✓\n")).collect();
    let mut stamps = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        state.add_log(run_id, line).unwrap();
        if i % 100 == 0 {
            state.add_log(other, "other\n").unwrap();
        }
        let (text, latest) = state.logs_after(run_id, stamps.last().copied().unwrap_or(0.0)).unwrap();
        assert_eq!(text, *line, "each read after the last stamp returns exactly the new line");
        stamps.push(latest);
    }
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "stamps strictly increase");
    let (all, latest) = state.logs_after(run_id, 0.0).unwrap();
    assert_eq!(all, lines.concat());
    assert_eq!(latest, *stamps.last().unwrap());
    let (tail, _) = state.logs_after(run_id, stamps[249]).unwrap();
    assert_eq!(tail, lines[250..].concat());
    assert_eq!(state.logs_after(run_id, latest).unwrap(), (String::new(), 0.0));
    assert_eq!(state.logs_after(other, 0.0).unwrap().0, "other\nother\nother\n");
    state.add_log(run_id, "").unwrap();
    state.add_log(run_id, "with\0nul and\r\nnewlines").unwrap();
    assert_eq!(state.logs_after(run_id, latest).unwrap().0, "with\0nul and\r\nnewlines");
    assert!(matches!(state.logs_after(run_id ^ 1, 0.0), Err(StateError::RunNotFound(_))));
}
