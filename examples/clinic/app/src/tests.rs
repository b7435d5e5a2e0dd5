//! Native tests: reading and splitting a site's data, and whole federations in memory
//! on CSV files (the PostgreSQL path runs end to end in tests/tests/clinic.rs).

use std::path::Path;

use quickstart_app::data::{generate, Dataset, DIM};
use sepal_sdk::prelude::*;
use sepal_sdk::testing::LocalGrid;

use crate::data::{parse_csv, split, Source};
use crate::{client_app, server_app};

fn to_csv(data: &Dataset) -> String {
    let mut csv = (0..DIM).map(|i| format!("x{i},")).collect::<String>() + "y\n";
    for i in 0..data.len() {
        let row: Vec<String> = data.row(i).iter().map(f32::to_string).collect();
        csv += &format!("{},{}\n", row.join(","), data.y[i]);
    }
    csv
}

#[test]
fn csv_round_trips_with_a_header_and_blank_lines() {
    let data = generate(20, 3);
    let parsed = parse_csv(&(to_csv(&data) + "\n")).unwrap();
    assert_eq!(parsed, data);
    // No header is fine too.
    let body: String = to_csv(&data).lines().skip(1).map(|l| format!("{l}\n")).collect();
    assert_eq!(parse_csv(&body).unwrap(), data);
}

#[test]
fn csv_errors_name_the_line_and_the_problem() {
    let row = |values: &str| format!("x0,x1,x2,x3,x4,x5,x6,x7,x8,x9,y\n{values}\n");
    assert!(parse_csv(&row("1,2,3,4,5,6,7,8,9,10,1")).is_ok());
    let err = parse_csv(&row("1,2,3,1")).unwrap_err();
    assert!(err.contains("line 2: 3 features, expected 10"), "{err}");
    let err = parse_csv(&row("1,2,3,4,5,6,7,8,9,10,2")).unwrap_err();
    assert!(err.contains("line 2: the label is 2"), "{err}");
    let err = parse_csv(&row("1,2,3,4,five,6,7,8,9,10,0")).unwrap_err();
    assert!(err.contains("line 2: \"five\" is not a number"), "{err}");
}

#[test]
fn every_fifth_sample_is_for_testing() {
    let data = generate(100, 1);
    let (train, test) = split(&data);
    assert_eq!((train.len(), test.len()), (80, 20));
    assert_eq!(test.row(0), data.row(4));
    assert_eq!(train.row(4), data.row(5));
}

#[test]
fn the_node_config_names_exactly_one_source() {
    let source = |config: Config| Source::from_node_config(&config);
    let url = "postgres://fl@127.0.0.1:5432/site_a";
    assert_eq!(source(Config::new().with("db-url", url)).unwrap(), Source::Postgres(url.into()));
    assert_eq!(source(Config::new().with("data-file", "/data/a.csv")).unwrap(), Source::Csv("/data/a.csv".into()));
    assert!(source(Config::new()).unwrap_err().message.contains("set db-url"));
    let both = Config::new().with("db-url", url).with("data-file", "/data/a.csv");
    assert!(source(both).unwrap_err().message.contains("both"));
}

fn federation(files: &[&Path]) -> LocalGrid {
    let run_config = Config::new()
        .with("num-server-rounds", 2)
        .with("local-epochs", 3)
        .with("lr", 0.5)
        .with("min-nodes", files.len() as i64)
        .with("mlflow-url", "");
    let mut grid = LocalGrid::new().with_run_config(run_config);
    for file in files {
        grid.add_node(client_app(), Config::new().with("data-file", file.to_str().unwrap()));
    }
    grid
}

#[test]
fn two_sites_learn_from_their_csv_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    std::fs::write(&a, to_csv(&generate(300, 11))).unwrap();
    std::fs::write(&b, to_csv(&generate(200, 12))).unwrap();
    let ctx = federation(&[&a, &b]).run(&server_app()).unwrap();
    let metrics = ctx.state.metric_record("final-metrics").unwrap();
    let accuracy = metrics.get_f64("accuracy").unwrap();
    assert!(accuracy > 0.85, "federated accuracy {accuracy}");
}

#[test]
fn a_round_without_any_usable_reply_fails_the_run_with_the_sites_errors() {
    let missing = Path::new("/nonexistent/clinic/site.csv");
    let err = federation(&[missing, missing]).run(&server_app()).unwrap_err();
    assert!(err.message.contains("round 1: no site trained the model"), "{}", err.message);
    assert!(err.message.contains("reading /nonexistent/clinic/site.csv"), "{}", err.message);
}
