//! A real MLflow tracking server for the tests: `mlflow server` from `.venv-mlflow`
//! (scripts/mlflow-env.sh, pinned 3.17.2) on a free loopback port, with a SQLite backend
//! in a temp dir; stopped (its whole process group) when the guard is dropped. Plus the
//! few REST calls the tests check results with.
//!
//! ```no_run
//! let mlflow = sepal_tests::mlflow::MlflowServer::start().unwrap();
//! let experiment = mlflow.experiment_id("clinic").unwrap(); // None until an app creates it
//! println!("{} {experiment:?}", mlflow.url());
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::procs::Proc;
use crate::{free_addr, repo_root};

/// How long the server may take to answer `/health` (it imports a lot at start).
const START: Duration = Duration::from_secs(120);
/// How long one REST call may take.
const CALL: Duration = Duration::from_secs(30);

/// The venv with the pinned `mlflow`: `$SEPAL_MLFLOW_VENV`, else `<repo>/.venv-mlflow`.
pub fn mlflow_venv() -> PathBuf {
    match std::env::var_os("SEPAL_MLFLOW_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => repo_root().join(".venv-mlflow"),
    }
}

/// A running `mlflow server`. Its log is `mlflow.log` in its temp dir.
pub struct MlflowServer {
    proc: Proc,
    addr: SocketAddr,
    url: String,
    dir: TempDir,
}

impl MlflowServer {
    /// Starts the server and waits until it answers `/health`.
    pub fn start() -> Result<MlflowServer> {
        let bin = mlflow_venv().join("bin").join("mlflow");
        if !bin.is_file() {
            bail!("no mlflow at {}: run scripts/mlflow-env.sh first", bin.display());
        }
        let dir = tempfile::Builder::new().prefix("sepal-mlflow-").tempdir()?;
        let addr = free_addr();
        let mut cmd = Command::new(bin);
        cmd.arg("server")
            .args(["--host", "127.0.0.1", "--port", &addr.port().to_string(), "--workers", "1"])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.path().join("mlflow.db").display()))
            .arg("--default-artifact-root")
            .arg(dir.path().join("artifacts"));
        let proc = Proc::spawn("mlflow", cmd, dir.path())?;
        let mut server = MlflowServer { proc, addr, url: format!("http://{addr}"), dir };
        server.wait_healthy().with_context(|| format!("mlflow server log:\n{}", server.proc.log_tail(40)))?;
        Ok(server)
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + START;
        self.proc.wait_for_port(self.addr, START)?;
        loop {
            match self.call("GET", "/health", None) {
                Ok((200, _)) => return Ok(()),
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                other => bail!("mlflow server not healthy after {START:?}: {other:?}"),
            }
        }
    }

    /// `http://127.0.0.1:PORT`, the origin to grant.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The id of experiment `name`, `None` if there is none.
    pub fn experiment_id(&self, name: &str) -> Result<Option<String>> {
        let path = format!("/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}");
        match self.call("GET", &path, None)? {
            (200, body) => Ok(body["experiment"]["experiment_id"].as_str().map(str::to_string)),
            (404, _) => Ok(None),
            (status, body) => bail!("get-by-name {name}: HTTP {status}: {body}"),
        }
    }

    /// The runs of an experiment (`runs/search`), each MLflow's JSON run.
    pub fn runs(&self, experiment_id: &str) -> Result<Vec<Value>> {
        let body = json!({ "experiment_ids": [experiment_id], "max_results": 1000 });
        let (status, reply) = self.call("POST", "/api/2.0/mlflow/runs/search", Some(&body))?;
        if status != 200 {
            bail!("runs/search: HTTP {status}: {reply}");
        }
        Ok(reply["runs"].as_array().cloned().unwrap_or_default())
    }

    /// Every point logged for metric `key` of a run, as (step, value), in step order.
    pub fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<(u64, f64)>> {
        let path = format!("/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key={key}");
        let (status, reply) = self.call("GET", &path, None)?;
        if status != 200 {
            bail!("metrics/get-history {key}: HTTP {status}: {reply}");
        }
        let mut points: Vec<(u64, f64)> = reply["metrics"]
            .as_array()
            .map(|ms| ms.iter().filter_map(|m| Some((m["step"].as_u64()?, m["value"].as_f64()?))).collect())
            .unwrap_or_default();
        points.sort_by_key(|p| p.0);
        Ok(points)
    }

    /// One HTTP/1.0 request (no chunked replies, the connection closes after the body);
    /// returns the status and the body as JSON (`null` if it is not JSON).
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect_timeout(&self.addr, CALL)?;
        stream.set_read_timeout(Some(CALL))?;
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply)?;
        let text = String::from_utf8_lossy(&reply);
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| anyhow!("no HTTP reply: {text}"))?;
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        let status = status.ok_or_else(|| anyhow!("no status in {head}"))?;
        Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
    }

    /// The temp dir (database, artifacts, log).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
