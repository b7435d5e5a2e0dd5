//! Native tests: the data, the model, each handler, and a whole federation in memory.

use sepal_sdk::prelude::*;
use sepal_sdk::testing::LocalGrid;

use crate::data::{self, DIM, TOTAL_SAMPLES};
use crate::model::LogisticRegression;
use crate::{client_app, server_app};

#[test]
fn partitions_are_deterministic_disjoint_and_unequal() {
    let n = 3;
    let mut total = 0;
    let mut sizes = Vec::new();
    for k in 0..n {
        let (a, b) = data::partition_bounds(k, n, TOTAL_SAMPLES);
        total += b - a;
        sizes.push(b - a);
        let (train, test) = data::partition(k, n).unwrap();
        assert_eq!(train.len() + test.len(), b - a);
        assert_eq!(train.x.len(), train.len() * DIM);
        assert_eq!(data::partition(k, n).unwrap().0, train, "deterministic");
    }
    assert_eq!(total, TOTAL_SAMPLES);
    assert!(sizes[0] < sizes[1] && sizes[1] < sizes[2], "{sizes:?}");
    assert!(data::partition(2, 2).is_err());
    assert!(data::partition(0, 0).is_err());

    let all = data::generate(TOTAL_SAMPLES, 1);
    let ones = all.y.iter().filter(|&&y| y == 1.0).count() as f64 / all.len() as f64;
    assert!((0.45..0.55).contains(&ones), "balanced classes: {ones}");
}

#[test]
fn local_training_improves_accuracy() {
    let (train, test) = data::partition(0, 2).unwrap();
    let mut model = LogisticRegression::new();
    let (loss0, acc0) = model.evaluate(&test);
    assert!((loss0 - std::f64::consts::LN_2).abs() < 1e-6);
    assert!((0.35..0.65).contains(&acc0), "untrained accuracy {acc0}");
    let train_loss = model.train(&train, 5, 0.5, 7);
    let (loss1, acc1) = model.evaluate(&test);
    assert!(train_loss < loss0 && loss1 < loss0, "{train_loss} {loss1}");
    assert!(acc1 > 0.85, "trained accuracy {acc1}");
}

#[test]
fn arrays_round_trip() {
    let mut model = LogisticRegression::new();
    model.weights[3] = 1.5;
    model.bias = -0.25;
    let arrays = model.to_arrays();
    assert_eq!(arrays.get("weight").unwrap().dims(), vec![1, DIM]);
    assert_eq!(LogisticRegression::from_arrays(&arrays).unwrap(), model);
    let short = ArrayRecord::new().with("weight", Array::vector_f32(&[1.0])).with("bias", Array::vector_f32(&[0.0]));
    assert!(LogisticRegression::from_arrays(&short).is_err());
}

fn node_context(partition: i64, partitions: i64) -> Context {
    Context::new(1, 100)
        .with_run_config(Config::new().with("local-epochs", 2).with("lr", 0.5))
        .with_node_config(Config::new().with("partition-id", partition).with("num-partitions", partitions))
}

fn instruction(message_type: &str, model: &LogisticRegression) -> Message {
    let content = RecordDict::new()
        .with("arrays", model.to_arrays().into())
        .with("config", ConfigRecord::new().with("lr", 0.5.into()).with("server-round", 1i64.into()).into());
    Message::new(content, 100, message_type)
}

#[test]
fn handlers_reply_with_arrays_and_metrics() {
    let app = client_app();
    let mut ctx = node_context(1, 2);
    let reply = app.handle(instruction("train", &LogisticRegression::new()), &mut ctx).unwrap();
    let content = reply.content();
    let trained = LogisticRegression::from_arrays(content.array_record("arrays").unwrap()).unwrap();
    assert_ne!(trained, LogisticRegression::new());
    let metrics = content.metric_record("metrics").unwrap();
    let (train, _) = data::partition(1, 2).unwrap();
    assert_eq!(metrics.get_i64("num-examples"), Some(train.len() as i64));
    assert!(metrics.get_f64("train_loss").unwrap() < std::f64::consts::LN_2);

    let reply = app.handle(instruction("evaluate", &trained), &mut ctx).unwrap();
    let metrics = reply.content().metric_record("metrics").unwrap();
    assert!(metrics.get_f64("eval_acc").unwrap() > 0.85);
    assert!(metrics.get_i64("num-examples").unwrap() > 0);

    assert!(app.handle(instruction("query", &trained), &mut ctx).is_err());
    let mut bad = node_context(5, 2);
    assert!(app.handle(instruction("train", &trained), &mut bad).is_err());
}

/// The run config of `pyproject.toml`.
fn run_config() -> Config {
    Config::new().with("num-server-rounds", 3).with("local-epochs", 5).with("lr", 0.5).with("min-nodes", 2)
}

#[test]
fn federated_run_in_memory() {
    let mut grid = LocalGrid::new().with_run_config(run_config());
    for partition in 0..2 {
        let config = Config::new().with("partition-id", partition).with("num-partitions", 2);
        grid.add_node(client_app(), config);
    }
    let ctx = grid.run(&server_app()).unwrap();
    let summary = ctx.state.metric_record("final-metrics").unwrap();
    let initial = summary.get_f64("initial-accuracy").unwrap();
    let accuracy = summary.get_f64("accuracy").unwrap();
    assert!((0.35..0.65).contains(&initial), "initial accuracy {initial}");
    assert!(accuracy > 0.85, "final accuracy {accuracy}");
    assert!(summary.get_f64("loss").unwrap() < 0.4);
    let arrays = ctx.state.array_record("final-arrays").unwrap();
    LogisticRegression::from_arrays(arrays).unwrap();
    // 3 rounds x (train + evaluate) x 2 nodes.
    assert_eq!(grid.handled(), 12);
}

#[test]
fn the_server_waits_for_min_nodes() {
    let mut grid = LocalGrid::new().with_run_config(run_config().with("min-nodes", 3));
    grid.add_node(client_app(), Config::new());
    grid.add_node(client_app(), Config::new());
    let err = grid.run(&server_app()).unwrap_err();
    assert!(err.message.contains("waits for 3"), "{}", err.message);
}
