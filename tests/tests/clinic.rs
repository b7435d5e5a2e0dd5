//! examples/clinic end to end: each site's ClientApp reads its data from a real
//! PostgreSQL server (or a CSV file in a read-only data directory), the ServerApp logs to
//! a real MLflow tracking server, and the sandbox lets either connection through (or
//! shows the directory) only when the operator granted it.

use sepal_tests::mlflow::MlflowServer;
use sepal_tests::postgres::Postgres;
use sepal_tests::wasm_apps::{sepal_run, wasm_app, SepalFederation};
use sepal_tests::{Federation, Impl, Isolation, EXAMPLE, RUN_TIMEOUT};

const SITES: [(&str, usize); 2] = [("site_a", 300), ("site_b", 200)];
const ROUNDS: u64 = 2;

/// The rule the labels follow (plus a little noise): learnable by logistic regression.
const WEIGHTS: [f64; 10] = [1.0, -0.8, 0.6, 0.4, -0.3, 0.2, 0.5, -0.5, 0.1, -0.1];

/// splitmix64, mapped to [-1, 1): a fixed, dependency-free source of features.
fn uniform(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// `rows` generated samples: 10 features in text form, and the label.
fn samples(rows: usize, seed: u64) -> Vec<(Vec<String>, u8)> {
    let mut state = seed;
    (0..rows)
        .map(|_| {
            let x: Vec<f64> = (0..WEIGHTS.len()).map(|_| uniform(&mut state)).collect();
            let score: f64 = x.iter().zip(WEIGHTS).map(|(x, w)| x * w).sum::<f64>() + 0.1 * uniform(&mut state);
            (x.iter().map(|v| format!("{v:.4}")).collect(), u8::from(score > 0.0))
        })
        .collect()
}

/// `CREATE TABLE train` and `rows` generated rows, as one SQL script.
fn train_table_sql(rows: usize, seed: u64) -> String {
    let values: Vec<String> =
        samples(rows, seed).iter().map(|(x, y)| format!("('{{{}}}', {y})", x.join(","))).collect();
    format!(
        "CREATE TABLE train (x real[] NOT NULL, y smallint NOT NULL); INSERT INTO train (x, y) VALUES {};",
        values.join(", ")
    )
}

/// The same kind of rows as a CSV file: a header, 10 feature columns, the label.
fn train_csv(rows: usize, seed: u64) -> String {
    let header = (0..WEIGHTS.len()).map(|i| format!("x{i},")).collect::<String>() + "y\n";
    header + &samples(rows, seed).iter().map(|(x, y)| format!("{},{y}\n", x.join(","))).collect::<String>()
}

/// A PostgreSQL server with the two sites' databases, logging every connection.
fn postgres(log_dir: &std::path::Path) -> Postgres {
    let pg = Postgres::start(log_dir).expect("starting PostgreSQL");
    for (i, (db, rows)) in SITES.iter().enumerate() {
        pg.create_database(db).unwrap();
        pg.psql(db, &train_table_sql(*rows, 42 + i as u64)).unwrap();
    }
    pg.psql("postgres", "ALTER SYSTEM SET log_connections = on").unwrap();
    pg.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    pg
}

/// Connections PostgreSQL has received so far (its log's `connection received` lines).
fn connections(pg: &mut Postgres) -> usize {
    pg.proc().log().matches("connection received").count()
}

/// A SuperLink and one SuperNode per site, each node with its site's `db-url`; with
/// `grants`, the SuperLink may reach MLflow and the nodes PostgreSQL.
fn federation(pg: &Postgres, mlflow: &MlflowServer, grants: bool) -> SepalFederation {
    let pg_addr = pg.addr().to_string();
    let nodes: Vec<Vec<String>> = SITES
        .iter()
        .map(|(db, _)| {
            let mut args = vec!["--node-config".to_string(), format!("db-url=\"{}\"", pg.url(db))];
            if grants {
                args.extend(["--wasm-allow-connect".to_string(), pg_addr.clone()]);
            }
            args
        })
        .collect();
    let superlink: Vec<&str> = if grants { vec!["--wasm-allow-http", mlflow.url()] } else { vec![] };
    SepalFederation::start_nodes(&superlink, &nodes).expect("starting the federation")
}

fn run_config(mlflow_url: &str) -> String {
    format!("num-server-rounds={ROUNDS} min-nodes={} node-wait-timeout=60 mlflow-url=\"{mlflow_url}\"", SITES.len())
}

#[test]
fn clinic_reaches_postgres_and_mlflow_only_when_granted() {
    let logs = tempfile::tempdir().unwrap();
    let mut pg = postgres(logs.path());
    let mlflow = MlflowServer::start().expect("starting MLflow");
    let app = wasm_app("clinic");

    // Without grants: the ServerApp's first MLflow call is refused, and (with tracking
    // off) every ClientApp's database connection is; nothing reaches either server.
    {
        let mut fed = federation(&pg, &mlflow, false);
        let before = connections(&mut pg);

        let run = fed.submit(&app, &run_config(mlflow.url())).unwrap();
        let status = fed.wait_finished(run, RUN_TIMEOUT).unwrap();
        let log = fed.log_show(run).unwrap();
        assert_eq!(status.status, "finished:failed", "{status:?}\n{log}");
        let refused = format!("origin {} not granted", mlflow.url());
        assert!(log.contains("refused by the sandbox") && log.contains(&refused), "{log}");

        let run = fed.submit(&app, &run_config("")).unwrap();
        let status = fed.wait_finished(run, RUN_TIMEOUT).unwrap();
        let log = fed.log_show(run).unwrap();
        assert_eq!(status.status, "finished:failed", "{status:?}\n{log}");
        let refused =
            format!("connection to {} refused by the sandbox: not granted with --wasm-allow-connect", pg.addr());
        assert!(
            status.details.contains("round 1: no site trained the model") && status.details.contains(&refused),
            "{status:?}"
        );
        assert!(log.matches(&refused).count() >= SITES.len(), "each site's error is in the run log:\n{log}");
        for node in fed.supernodes() {
            let node_log = node.log();
            assert!(node_log.contains("ClientApp failed") && node_log.contains(&refused), "{node_log}");
        }

        assert_eq!(connections(&mut pg), before, "a connection reached PostgreSQL:\n{}", pg.proc().log_tail(20));
        assert_eq!(mlflow.experiment_id("clinic").unwrap(), None, "something reached MLflow");
    }

    // With the grants: trained on both databases, one MLflow run with a point per round.
    let mut fed = federation(&pg, &mlflow, true);
    let before = connections(&mut pg);
    let run = fed.submit(&app, &run_config(mlflow.url())).unwrap();
    let status = fed.wait_finished(run, RUN_TIMEOUT).unwrap();
    let log = fed.log_show(run).unwrap();
    assert_eq!(status.status, "finished:completed", "{status:?}\n{log}");
    fed.ensure_running().unwrap();
    // Each site connects once per train and once per evaluate message.
    let reached = connections(&mut pg) - before;
    assert!(reached >= 2 * SITES.len() * ROUNDS as usize, "{reached} connections reached PostgreSQL");

    assert_tracked(&mlflow, run, &log);
}

/// MLflow has experiment `clinic` with one run, of Sepal run `run`, finished, with one
/// `loss` and one `accuracy` point per round and a good final accuracy.
fn assert_tracked(mlflow: &MlflowServer, run: u64, log: &str) {
    let experiment = mlflow.experiment_id("clinic").unwrap().expect("the clinic experiment exists");
    let runs = mlflow.runs(&experiment).unwrap();
    assert_eq!(runs.len(), 1, "one MLflow run per Sepal run: {runs:?}");
    let info = &runs[0]["info"];
    assert_eq!(info["run_name"].as_str(), Some(format!("sepal-run-{run}").as_str()), "{info}");
    assert_eq!(info["status"].as_str(), Some("FINISHED"), "{info}");
    let run_id = info["run_id"].as_str().unwrap();
    let steps = |key: &str| -> Vec<(u64, f64)> { mlflow.metric_history(run_id, key).unwrap() };
    let (loss, accuracy) = (steps("loss"), steps("accuracy"));
    let rounds: Vec<u64> = (1..=ROUNDS).collect();
    assert_eq!(loss.iter().map(|p| p.0).collect::<Vec<_>>(), rounds, "one loss point per round: {loss:?}");
    assert_eq!(accuracy.iter().map(|p| p.0).collect::<Vec<_>>(), rounds, "one accuracy point per round: {accuracy:?}");
    let last = accuracy.last().unwrap().1;
    assert!(last > 0.8, "federated accuracy after {ROUNDS} rounds: {accuracy:?}\n{log}");
    assert!(loss.iter().all(|p| p.1.is_finite() && p.1 < std::f64::consts::LN_2), "{loss:?}");
}

#[test]
fn clinic_under_process_isolation_takes_the_grants_on_the_app_processes() {
    let logs = tempfile::tempdir().unwrap();
    let mut pg = postgres(logs.path());
    let mlflow = MlflowServer::start().expect("starting MLflow");
    let app = wasm_app("clinic");
    let mut builder = Federation::builder()
        .superlink(Impl::Sepal)
        .supernode(Impl::Sepal)
        .apps(Impl::Sepal)
        .isolation(Isolation::Process)
        .supernodes(SITES.len())
        .serverapp_arg("--wasm-allow-http")
        .serverapp_arg(mlflow.url())
        .clientapp_arg("--wasm-allow-connect")
        .clientapp_arg(pg.addr().to_string());
    for (i, (db, _)) in SITES.iter().enumerate() {
        builder = builder.node_config_at(i, format!("db-url=\"{}\"", pg.url(db)));
    }
    let fed = builder.start().expect("starting the federation");
    let flwr = fed.flwr(EXAMPLE).unwrap();
    let before = connections(&mut pg);

    let run = sepal_run(fed.exec_addr(), &app, &run_config(mlflow.url())).unwrap();
    let waited = flwr.wait_for_status(run, |s| s.starts_with("finished"), RUN_TIMEOUT);
    let log = flwr.log_show(run).unwrap_or_default();
    assert_eq!(waited.unwrap(), "finished:completed", "{log}");
    assert!(connections(&mut pg) - before >= 2 * SITES.len() * ROUNDS as usize);
    assert_tracked(&mlflow, run, &log);
}

/// The other grant: sites' CSV files in a read-only data directory, read with std::fs.
#[test]
fn clinic_reads_csv_files_from_the_granted_data_dir() {
    let data = tempfile::tempdir().unwrap();
    for (i, (site, rows)) in SITES.iter().enumerate() {
        std::fs::write(data.path().join(format!("{site}.csv")), train_csv(*rows, 42 + i as u64)).unwrap();
    }
    let nodes = |grant: bool| -> Vec<Vec<String>> {
        SITES
            .iter()
            .map(|(site, _)| {
                let mut args = vec!["--node-config".to_string(), format!("data-file=\"/data/{site}.csv\"")];
                if grant {
                    args.extend(["--wasm-data-dir".to_string(), format!("{}:/data", data.path().display())]);
                }
                args
            })
            .collect()
    };
    let app = wasm_app("clinic");

    let fed = SepalFederation::start_nodes(&[], &nodes(true)).unwrap();
    let run = fed.submit(&app, &run_config("")).unwrap();
    let status = fed.wait_finished(run, RUN_TIMEOUT).unwrap();
    let log = fed.log_show(run).unwrap();
    assert_eq!(status.status, "finished:completed", "{status:?}\n{log}");
    let summary = log.lines().find(|l| l.contains("clinic finished")).expect("the summary line");
    let accuracy: f64 = summary.rsplit("accuracy ").next().unwrap().trim().parse().unwrap();
    assert!(accuracy > 0.8, "{summary}");
    drop(fed);

    // Without the grant the app sees no /data at all.
    let fed = SepalFederation::start_nodes(&[], &nodes(false)).unwrap();
    let run = fed.submit(&app, &run_config("")).unwrap();
    let status = fed.wait_finished(run, RUN_TIMEOUT).unwrap();
    assert_eq!(status.status, "finished:failed", "{status:?}");
    assert!(status.details.contains("reading /data/site_a.csv: No such file or directory"), "{status:?}");
}
