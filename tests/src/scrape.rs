//! Reading what a server shows over plain HTTP, as Prometheus and a load balancer do:
//! `GET` a path, and pick samples out of the Prometheus text format.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result};

/// `GET path` over HTTP/1.1: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response).with_context(|| format!("reading GET {path} from {addr}"))?;
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// The value of the sample `name{labels}` (exactly as exposed), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of every sample whose line starts with `prefix` (a metric name and the start of
/// its labels, e.g. `sepal_grpc_calls_total{service="flwr.proto.Fleet"`).
pub fn sum_samples(text: &str, prefix: &str) -> f64 {
    let values = text.lines().filter(|l| l.starts_with(prefix));
    values.filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok()).sum()
}
