//! Unit tests: replies, conversions, dispatch, aggregation and a LocalGrid run.

use std::time::Duration;

use crate::message::{now, DEFAULT_TTL, SUPERLINK_NODE_ID};
use crate::prelude::*;
use crate::strategy::aggregate::{
    aggregate_arrayrecords, aggregate_metricrecords, normalize_weights, weighted_accumulate_f32,
    weighted_accumulate_f64, BLOCK,
};
use crate::strategy::{format_metrics, FedAvg, StartOptions, Strategy};
use crate::testing::LocalGrid;
use crate::{MessageError, Metadata};

fn instruction(message_type: &str) -> Message {
    let metadata = Metadata {
        run_id: 5,
        message_id: "a".repeat(64),
        src_node_id: SUPERLINK_NODE_ID,
        dst_node_id: 7,
        reply_to_message_id: String::new(),
        group_id: "3".into(),
        ttl: 100.0,
        message_type: message_type.into(),
        created_at: now() - 10.0,
    };
    let content = RecordDict::new().with("config", ConfigRecord::new().with("lr", 0.5.into()).into());
    Message::from_parts(metadata, content)
}

#[test]
fn reply_copies_swaps_and_shortens_ttl() {
    let ins = instruction("train.fine");
    let before = now();
    let reply = ins.reply(RecordDict::new().with("metrics", MetricRecord::new().into()));
    let m = reply.metadata();
    assert_eq!(m.run_id, 5);
    assert_eq!(m.group_id, "3");
    assert_eq!(m.message_type, "train.fine");
    assert_eq!(m.src_node_id, 7);
    assert_eq!(m.dst_node_id, SUPERLINK_NODE_ID);
    assert_eq!(m.reply_to_message_id, ins.message_id());
    assert_eq!(m.message_id, "", "the host computes the reply's id");
    assert!(m.created_at >= before && m.created_at <= now());
    assert!((m.ttl - 90.0).abs() < 1.0, "ttl {}", m.ttl);
    let deadline = ins.created_at() + ins.ttl();
    assert!(m.created_at + m.ttl <= deadline + 1e-6);
    assert!(reply.has_content() && !reply.has_error());
}

#[test]
fn error_reply_carries_the_error_and_no_content() {
    let ins = instruction("evaluate");
    let reply = ins.error_reply(MessageError::CLIENT_APP_RAISED_EXCEPTION, "boom");
    assert!(reply.has_error());
    assert!(!reply.has_content());
    assert!(reply.content().is_empty());
    assert_eq!(reply.error().unwrap().code, 2);
    assert_eq!(reply.error().unwrap().reason, "boom");
    assert_eq!(reply.dst_node_id(), SUPERLINK_NODE_ID);
    assert_eq!(reply.reply_to_message_id(), ins.message_id());

    let decoded = Message::from_proto_bytes(&reply.to_proto_bytes()).unwrap();
    assert_eq!(decoded, reply);
    let core: sepal_core::Message = decoded.into();
    assert!(core.content.is_none() && core.error.is_some());
}

#[test]
fn new_instruction_has_flower_defaults() {
    let m = Message::new(RecordDict::new(), 9, "query").with_group_id("2");
    assert_eq!(m.ttl(), DEFAULT_TTL);
    assert_eq!(m.dst_node_id(), 9);
    assert_eq!(m.src_node_id(), 0, "the host fills in the source");
    assert_eq!(m.run_id(), 0, "the host fills in the run id");
    assert_eq!(m.message_id(), "");
    assert_eq!(m.group_id(), "2");
    assert!(m.created_at() > 1.6e9);
    let m = m.with_ttl(30.0);
    assert_eq!(m.ttl(), 30.0);
}

fn sample_content() -> RecordDict {
    let arrays = ArrayRecord::new()
        .with("w", Array::from_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap())
        .with("b", Array::vector_f64(&[0.25]));
    let metrics = MetricRecord::new()
        .with("num-examples", 12i64.into())
        .with("loss", 0.5.into())
        .with("hist", vec![1.0, 2.0].into());
    let config = ConfigRecord::new().with("name", "x".into()).with("flag", true.into());
    RecordDict::new().with("arrays", arrays.into()).with("metrics", metrics.into()).with("config", config.into())
}

#[test]
fn message_round_trips_through_protobuf() {
    let ins = instruction("train");
    let reply = ins.reply(sample_content());
    let bytes = reply.to_proto_bytes();
    let decoded = Message::from_proto_bytes(&bytes).unwrap();
    assert_eq!(decoded, reply);
    assert_eq!(reply.clone().into_proto_bytes(), bytes);
    let keys: Vec<&str> = decoded.content().keys().collect();
    assert_eq!(keys, ["arrays", "metrics", "config"], "order is kept");

    let core: sepal_core::Message = reply.clone().into();
    assert_eq!(Message::from(core), reply);
    assert!(Message::from_proto_bytes(b"\xff\xff\xff").is_err());
}

#[test]
fn a_message_decoded_from_its_buffer_keeps_array_data_in_place() {
    let reply = instruction("train").reply(sample_content());
    let bytes = reply.to_proto_bytes();
    let range = bytes.as_ptr_range();
    let decoded = Message::from_proto_buffer(bytes).unwrap();
    assert_eq!(decoded, reply);
    let w = &decoded.content().array_record("arrays").unwrap().get("w").unwrap().data;
    assert!(range.contains(&w.as_ptr()), "the array's data was copied out of the buffer");
    assert!(Message::from_proto_buffer(b"\xff\xff\xff".to_vec()).is_err());
}

#[test]
fn an_array_taken_out_of_its_message_changes_in_place() {
    let bytes = instruction("train").reply(sample_content()).to_proto_bytes();
    let range = bytes.as_ptr_range();
    let mut decoded = Message::from_proto_buffer(bytes).unwrap();
    let Some(Record::Array(mut arrays)) = decoded.take_content().remove("arrays") else { panic!("no arrays") };
    let (b, w) = (arrays.remove("b").unwrap(), arrays.remove("w").unwrap());
    // `w` shares the buffer with `b`: changing `b` copies it.
    assert!(!range.contains(&crate::bytes::BytesMut::from(b.data).as_ptr()));
    // Then `w` holds the buffer alone and takes it over.
    let mut data = crate::bytes::BytesMut::from(w.data);
    assert!(range.contains(&data.as_ptr()), "the array's data was copied");
    data[0] ^= 1;
}

#[test]
fn array_conversions() {
    let content = sample_content();
    let arrays = content.array_record("arrays").unwrap();
    let w = arrays.get("w").unwrap();
    assert_eq!(w.dims(), vec![2, 3]);
    assert_eq!(w.numel(), 6);
    assert_eq!(w.dtype, "float32");
    assert_eq!(w.to_f32().unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert!(w.to_f64().is_err(), "dtype is checked");
    let b = arrays.get("b").unwrap();
    assert_eq!(b.dims(), vec![1]);
    assert_eq!(b.to_f64().unwrap(), vec![0.25]);
    assert!(Array::from_f32(&[1.0, 2.0], &[3]).is_err());
    assert_eq!(Array::vector_f32(&[]).dims(), vec![0]);
}

#[test]
fn context_round_trips_and_config_getters() {
    let mut ctx = Context::new(3, 42)
        .with_run_config(
            Config::new()
                .with("num-server-rounds", 3)
                .with("lr", 0.5)
                .with("name", "quick")
                .with("on", true)
                .with("big", u64::MAX),
        )
        .with_node_config(Config::new().with("partition-id", 1));
    ctx.state.insert("counter", MetricRecord::new().with("n", 2i64.into()).into());
    let decoded = Context::from_proto_bytes(&ctx.to_proto_bytes()).unwrap();
    assert_eq!(decoded, ctx);
    assert_eq!(Context::from_proto_bytes(&ctx.clone().into_proto_bytes()).unwrap(), ctx);

    let rc = &decoded.run_config;
    assert_eq!(rc.get_i64("num-server-rounds"), Some(3));
    assert_eq!(rc.get_u64("num-server-rounds"), Some(3));
    assert_eq!(rc.get_f64("num-server-rounds"), Some(3.0));
    assert_eq!(rc.get_f64("lr"), Some(0.5));
    assert_eq!(rc.get_i64("lr"), None, "no silent float truncation");
    assert_eq!(rc.get_str("name"), Some("quick"));
    assert_eq!(rc.get_bool("on"), Some(true));
    assert_eq!(rc.get_u64("big"), Some(u64::MAX));
    assert_eq!(rc.get_i64("big"), None);
    assert_eq!(rc.get_i64_or("missing", 7), 7);
    assert_eq!(rc.get_str_or("missing", "d"), "d");
    assert!(rc.require_f64("missing").unwrap_err().message.contains("missing"));
    assert_eq!(decoded.node_config.require_i64("partition-id").unwrap(), 1);
    assert!(Context::from_proto_bytes(b"\x0a").is_err());
}

fn echo_type(msg: Message, _ctx: &mut Context) -> Result<Message, AppError> {
    let kind = msg.message_type().to_owned();
    Ok(msg.reply(RecordDict::new().with("config", ConfigRecord::new().with("handled", kind.as_str().into()).into())))
}

fn handled_by(app: &ClientApp, message_type: &str) -> Result<String, AppError> {
    let handler_tag = |reply: Message| -> String {
        match reply.content().config_record("config").unwrap().get("tag") {
            Some(ConfigValue::String(s)) => s.clone(),
            _ => String::new(),
        }
    };
    let mut ctx = Context::new(1, 7);
    app.handle(instruction(message_type), &mut ctx).map(handler_tag)
}

fn tagged(tag: &'static str) -> impl Fn(Message, &mut Context) -> Result<Message, AppError> {
    move |msg, _ctx| Ok(msg.reply(RecordDict::new().with("config", ConfigRecord::new().with("tag", tag.into()).into())))
}

#[test]
fn dispatch_by_message_type() {
    let app =
        ClientApp::new().train(tagged("train")).evaluate(tagged("evaluate")).on("train.special", tagged("special"));
    assert_eq!(handled_by(&app, "train").unwrap(), "train");
    assert_eq!(handled_by(&app, "train.other").unwrap(), "train");
    assert_eq!(handled_by(&app, "train.special").unwrap(), "special");
    assert_eq!(handled_by(&app, "evaluate.x").unwrap(), "evaluate");
    let err = handled_by(&app, "query").unwrap_err();
    assert_eq!(err.code, AppError::CLIENT_APP_RAISED_EXCEPTION);
    assert!(err.message.contains("query"), "{}", err.message);
    assert!(app.handles("train.x") && !app.handles("query"));

    let app = app.query(echo_type).train(tagged("replaced"));
    assert_eq!(handled_by(&app, "train").unwrap(), "replaced");
    assert_eq!(app.message_types().count(), 4);
}

#[test]
fn handler_errors_and_non_replies_are_app_errors() {
    let app = ClientApp::new()
        .train(|_msg, _ctx| Err(AppError::with_code(2, "no data")))
        .evaluate(|_msg, _ctx| Ok(Message::new(RecordDict::new(), 1, "evaluate")));
    let mut ctx = Context::new(1, 7);
    let err = app.handle(instruction("train"), &mut ctx).unwrap_err();
    assert_eq!(err, AppError::with_code(2, "no data"));
    let err = app.handle(instruction("evaluate"), &mut ctx).unwrap_err();
    assert!(err.message.contains("msg.reply"), "{}", err.message);
}

#[test]
fn handle_proto_updates_the_context() {
    let app = ClientApp::new().query(|msg, ctx| {
        let n = match ctx.state.metric_record("counter").and_then(|r| r.get("n")) {
            Some(MetricValue::Sint64(n)) => *n,
            _ => 0,
        };
        ctx.state.insert("counter", MetricRecord::new().with("n", (n + 1).into()).into());
        Ok(msg.reply(RecordDict::new()))
    });
    let mut ctx_bytes = Context::new(1, 7).into_proto_bytes();
    for _ in 0..3 {
        let (reply, ctx) = app.handle_proto(&instruction("query").to_proto_bytes(), &ctx_bytes).unwrap();
        assert!(Message::from_proto_bytes(&reply).unwrap().has_content());
        ctx_bytes = ctx;
    }
    let ctx = Context::from_proto_bytes(&ctx_bytes).unwrap();
    let n = ctx.state.metric_record("counter").unwrap().get("n").unwrap();
    assert_eq!(*n, MetricValue::Sint64(3));
    let err = app.handle_proto(b"\xff", &ctx_bytes).unwrap_err();
    assert!(err.message.contains("invalid instruction"), "{}", err.message);
}

#[test]
fn kernels_match_a_plain_loop() {
    for len in [0, 1, BLOCK - 1, BLOCK, 3 * BLOCK + 17] {
        let x: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
        let mut acc: Vec<f32> = (0..len).map(|i| (i % 7) as f32).collect();
        let mut expected = acc.clone();
        for (a, b) in expected.iter_mut().zip(&x) {
            *a += 0.3 * *b;
        }
        weighted_accumulate_f32(&mut acc, &x, 0.3);
        assert_eq!(acc, expected, "len {len}");

        let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let mut acc64 = vec![1.0; len];
        weighted_accumulate_f64(&mut acc64, &x64, 0.25);
        let expected64: Vec<f64> = x64.iter().map(|v| 1.0 + 0.25 * v).collect();
        assert_eq!(acc64, expected64);
    }
}

#[test]
fn weighted_average_by_hand() {
    // Weights 1 and 3: factors 0.25 and 0.75.
    let a = ArrayRecord::new()
        .with("w", Array::from_f32(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap())
        .with("b", Array::vector_f64(&[10.0]))
        .with("steps", Array::from_i64(&[4], &[1]).unwrap());
    let b = ArrayRecord::new()
        .with("w", Array::from_f32(&[5.0, 6.0, 7.0, 8.0], &[2, 2]).unwrap())
        .with("b", Array::vector_f64(&[20.0]))
        .with("steps", Array::from_i64(&[8], &[1]).unwrap());
    let avg = aggregate_arrayrecords(&[(&a, 1.0), (&b, 3.0)]).unwrap();
    assert_eq!(avg.keys().collect::<Vec<_>>(), ["w", "b", "steps"]);
    let w = avg.get("w").unwrap();
    assert_eq!(w.dims(), vec![2, 2]);
    assert_eq!(w.to_f32().unwrap(), vec![4.0, 5.0, 6.0, 7.0]);
    assert_eq!(avg.get("b").unwrap().to_f64().unwrap(), vec![17.5]);
    assert_eq!(avg.get("steps").unwrap().dtype, "float64");
    assert_eq!(avg.get("steps").unwrap().to_f64().unwrap(), vec![7.0]);

    let ma = MetricRecord::new()
        .with("num-examples", 1i64.into())
        .with("loss", 1.0.into())
        .with("hist", vec![0.0, 4.0].into());
    let mb = MetricRecord::new()
        .with("num-examples", 3i64.into())
        .with("loss", 2.0.into())
        .with("hist", vec![4.0, 0.0].into());
    let m = aggregate_metricrecords(&[(&ma, 1.0), (&mb, 3.0)], "num-examples").unwrap();
    assert_eq!(m.get("num-examples"), None);
    assert_eq!(m.get("loss"), Some(&MetricValue::Double(1.75)));
    assert_eq!(m.get("hist"), Some(&MetricValue::DoubleList(vec![3.0, 1.0])));
    assert_eq!(format_metrics(&m), "{'loss': 1.75, 'hist': [3, 1]}");
}

#[test]
fn aggregation_rejects_mismatches_and_bad_weights() {
    let a = ArrayRecord::new().with("w", Array::vector_f32(&[1.0, 2.0]));
    let b = ArrayRecord::new().with("w", Array::vector_f32(&[1.0, 2.0, 3.0]));
    let c = ArrayRecord::new().with("v", Array::vector_f32(&[1.0, 2.0]));
    assert!(aggregate_arrayrecords(&[(&a, 1.0), (&b, 1.0)]).is_err());
    assert!(aggregate_arrayrecords(&[(&a, 1.0), (&c, 1.0)]).is_err());
    assert!(aggregate_arrayrecords(&[]).is_err());
    assert!(normalize_weights(&[0.0, 0.0]).is_err());
    assert!(normalize_weights(&[1.0, -1.0]).is_err());
    assert!(normalize_weights(&[f64::NAN]).is_err());
    assert_eq!(normalize_weights(&[1.0, 3.0]).unwrap(), vec![0.25, 0.75]);
}

/// A train reply with arrays `w` and an example count.
fn train_reply(ins: &Message, w: &[f32], n: i64) -> Message {
    ins.reply(RecordDict::new().with("arrays", ArrayRecord::new().with("w", Array::vector_f32(w)).into()).with(
        "metrics",
        MetricRecord::new().with("num-examples", n.into()).with("train_loss", (n as f64).into()).into(),
    ))
}

#[test]
fn fedavg_weights_by_num_examples_and_skips_failures() {
    let ins = instruction("train");
    let replies = vec![
        train_reply(&ins, &[1.0, 1.0], 1),
        train_reply(&ins, &[5.0, 9.0], 3),
        ins.error_reply(2, "crashed"),
        ins.reply(RecordDict::new().with("metrics", MetricRecord::new().into())),
        train_reply(&ins, &[1.0, 2.0, 3.0], 100), // wrong shape: left out
    ];
    let mut fedavg = FedAvg::new();
    let (arrays, metrics) = fedavg.aggregate_train(1, replies).unwrap();
    let w = arrays.unwrap().get("w").unwrap().to_f32().unwrap();
    assert_eq!(w, vec![4.0, 7.0]);
    assert_eq!(metrics.unwrap().get("train_loss"), Some(&MetricValue::Double(0.25 * 1.0 + 0.75 * 3.0)));
    assert_eq!(fedavg.aggregate_train(1, vec![]).unwrap(), (None, None));

    let mut custom = FedAvg::new().weighted_by_key("n");
    let replies = vec![train_reply(&ins, &[1.0, 1.0], 1)];
    assert_eq!(custom.aggregate_train(1, replies).unwrap(), (None, None));
}

// ---- A whole federation in memory -------------------------------------------------

/// Each node holds a value and a count (from its node config); training returns the
/// value, so FedAvg computes the count-weighted mean.
fn mean_client() -> ClientApp {
    fn train(msg: Message, ctx: &mut Context) -> Result<Message, AppError> {
        let value = ctx.node_config.require_f64("value")? as f32;
        let count = ctx.node_config.require_i64("count")?;
        let rounds_seen = match ctx.state.metric_record("state").and_then(|r| r.get("rounds")) {
            Some(MetricValue::Sint64(n)) => *n,
            _ => 0,
        };
        ctx.state.insert("state", MetricRecord::new().with("rounds", (rounds_seen + 1).into()).into());
        let config = msg.content().config_record("config").ok_or("no config")?;
        assert!(config.contains_key("server-round"));
        assert_eq!(config.get("lr"), Some(&ConfigValue::Double(0.5)));
        Ok(train_reply(&msg, &[value, 2.0 * value], count))
    }
    fn evaluate(msg: Message, ctx: &mut Context) -> Result<Message, AppError> {
        let value = ctx.node_config.require_f64("value")?;
        let global = msg.content().array_record("arrays").and_then(|a| a.get("w")).ok_or("no arrays")?.to_f32()?;
        let metrics = MetricRecord::new()
            .with("num-examples", ctx.node_config.require_i64("count")?.into())
            .with("distance", (f64::from(global[0]) - value).abs().into());
        Ok(msg.reply(RecordDict::new().with("metrics", metrics.into())))
    }
    ClientApp::new().train(train).evaluate(evaluate)
}

fn mean_server(grid: &mut dyn Grid, ctx: &mut Context) -> Result<(), AppError> {
    let rounds = ctx.run_config.get_u64_or("num-server-rounds", 2);
    let initial = ArrayRecord::new().with("w", Array::vector_f32(&[0.0, 0.0]));
    let mut strategy = FedAvg::new().min_available_nodes(3);
    let mut central_rounds = Vec::new();
    let result = strategy.start(
        grid,
        initial,
        StartOptions::new(rounds)
            .timeout(Some(Duration::from_secs(5)))
            .train_config(ConfigRecord::new().with("lr", 0.5.into()))
            .evaluate_fn(|round, _arrays| {
                central_rounds.push(round);
                Ok(Some(MetricRecord::new().with("round", (round as i64).into())))
            }),
    )?;
    assert_eq!(central_rounds, (0..=rounds).collect::<Vec<_>>());
    ctx.state.insert("result", result.arrays.into());
    let evaluate = result.evaluate_metrics.get(&rounds).ok_or("no evaluation")?;
    ctx.state.insert("evaluate", evaluate.clone().into());
    Ok(())
}

fn mean_grid() -> LocalGrid {
    let mut grid = LocalGrid::new().with_run_config(Config::new().with("num-server-rounds", 2).with("x", 1));
    for (value, count) in [(1.0, 10), (2.0, 30), (10.0, 60)] {
        let config = Config::new().with("value", value).with("count", count);
        grid.add_node(mean_client(), config);
    }
    grid
}

#[test]
fn local_grid_runs_fedavg_rounds() {
    let mut grid = mean_grid();
    let ctx = grid.run(&ServerApp::new(mean_server)).unwrap();
    // (1*10 + 2*30 + 10*60) / 100 = 6.7
    let w = ctx.state.array_record("result").unwrap().get("w").unwrap();
    let w = w.to_f32().unwrap();
    assert!((w[0] - 6.7).abs() < 1e-5, "{w:?}");
    assert!((w[1] - 13.4).abs() < 1e-5, "{w:?}");
    // Weighted mean distance: (5.7*10 + 4.7*30 + 3.3*60) / 100 = 3.96
    let evaluate = ctx.state.metric_record("evaluate").unwrap();
    match evaluate.get("distance") {
        Some(MetricValue::Double(d)) => assert!((d - 3.96).abs() < 1e-5, "{d}"),
        other => panic!("{other:?}"),
    }
    // Two rounds of train + evaluate on three nodes; state persisted per node.
    assert_eq!(grid.handled(), 12);
    for node in grid.node_ids().unwrap() {
        let state = &grid.node_context(node).unwrap().state;
        let rounds = state.metric_record("state").unwrap().get("rounds").unwrap();
        assert_eq!(*rounds, MetricValue::Sint64(2));
    }
}

#[test]
fn local_grid_answers_failures_with_error_replies() {
    let mut grid = LocalGrid::new();
    let ok = grid.add_node(ClientApp::new().query(echo_type), Config::new());
    let failing = grid.add_node(ClientApp::new().query(|_m, _c| Err(AppError::new("nope"))), Config::new());
    let panicking = grid.add_node(ClientApp::new().query(|_m, _c| panic!("kaboom")), Config::new());
    let offline = grid.add_node(ClientApp::new().query(echo_type), Config::new());
    grid.set_online(offline, false);
    assert_eq!(grid.node_ids().unwrap(), vec![ok, failing, panicking]);

    let targets = [ok, failing, panicking, offline, 999];
    let messages = targets.iter().map(|&n| Message::new(RecordDict::new(), n, "query")).collect();
    let ids = grid.push_messages(messages).unwrap();
    assert_eq!(ids.iter().filter(|id| id.len() == 64).count(), 3);
    assert_eq!(ids[3], "");
    assert_eq!(ids[4], "");
    let replies = grid.pull_messages(&ids[..3]).unwrap();
    assert_eq!(replies.len(), 3);
    let by_node = |node: u64| replies.iter().find(|r| r.src_node_id() == node).unwrap();
    assert!(by_node(ok).has_content());
    assert_eq!(by_node(ok).reply_to_message_id(), ids[0]);
    assert_eq!(by_node(ok).run_id(), 1);
    assert_eq!(by_node(ok).message_id().len(), 64);
    assert_eq!(by_node(failing).error().unwrap().reason, "nope");
    let panicked = by_node(panicking).error().unwrap();
    assert_eq!(panicked.code, 2);
    assert!(panicked.reason.contains("kaboom"), "{}", panicked.reason);
    assert!(grid.pull_messages(&ids).unwrap().is_empty(), "replies are pulled once");

    let err = grid.wait_for_nodes(5, None).unwrap_err();
    assert!(err.message.contains("waits for 5"), "{}", err.message);
}

#[test]
fn server_errors_end_the_run() {
    let mut grid = LocalGrid::new();
    let app = ServerApp::new(|_grid, _ctx| Err(AppError::new("no nodes")));
    assert_eq!(grid.run(&app).unwrap_err().message, "no nodes");
    // FedAvg without enough nodes fails instead of waiting forever on a LocalGrid.
    let app = ServerApp::new(mean_server);
    assert!(grid.run(&app).is_err());
}

#[test]
fn log_macros_format() {
    crate::info!("round {} of {}", 1, 3);
    crate::debug!("plain");
    crate::warn!("{:?}", vec![1, 2]);
    crate::error!("e");
    crate::log::log(crate::log::Level::Info, "direct");
    assert_eq!(crate::log::Level::Warn.to_string(), "WARNING");
}
