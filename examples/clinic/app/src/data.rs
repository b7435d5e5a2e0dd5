//! Where a site's samples come from: its PostgreSQL database (node config `db-url`) or
//! a CSV file under the operator's read-only data directory (node config `data-file`).
//!
//! Both hold rows of [`DIM`] features and a 0/1 label. Every fifth sample (in the order
//! read) goes to the test split, the rest to the train split, so a site's split is the
//! same on every message.

use std::fmt::Display;

use quickstart_app::data::{Dataset, DIM};
use sepal_sdk::postgres::{parse_f32_array, Client};
use sepal_sdk::AppError;

/// The query a site's database answers: table `train (x real[] NOT NULL, y smallint NOT NULL)`.
pub const QUERY: &str = "SELECT x, y FROM train";

/// Where this node's data is, from its node config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A `postgres://` URL (`db-url`).
    Postgres(String),
    /// A CSV file path as the app sees it, e.g. `/data/site_a.csv` (`data-file`).
    Csv(String),
}

impl Source {
    /// The node config's `db-url` or `data-file` (exactly one of them).
    pub fn from_node_config(config: &sepal_sdk::Config) -> Result<Source, AppError> {
        match (config.get_str("db-url"), config.get_str("data-file")) {
            (Some(url), None) => Ok(Source::Postgres(url.to_string())),
            (None, Some(path)) => Ok(Source::Csv(path.to_string())),
            (Some(_), Some(_)) => Err("the node config sets both db-url and data-file; set one".into()),
            (None, None) => Err(AppError::new(
                "the node config names no data: set db-url (postgres://user@host:port/db) \
                 or data-file (a CSV file under the --wasm-data-dir mount)",
            )),
        }
    }

    /// Every sample of the site.
    pub fn load(&self) -> Result<Dataset, AppError> {
        match self {
            Source::Postgres(url) => load_postgres(url),
            Source::Csv(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| AppError::new(format!("reading {path}: {e}")))?;
                parse_csv(&text).map_err(|e| AppError::new(format!("{path}: {e}")))
            }
        }
    }
}

/// This site's (train, test) split.
pub fn split(all: &Dataset) -> (Dataset, Dataset) {
    let (mut train, mut test) = (Dataset::default(), Dataset::default());
    for i in 0..all.len() {
        let part = if i % 5 == 4 { &mut test } else { &mut train };
        part.x.extend_from_slice(all.row(i));
        part.y.push(all.y[i]);
    }
    (train, test)
}

fn load_postgres(url: &str) -> Result<Dataset, AppError> {
    let mut db = Client::connect(url)?;
    let rows = db.simple_query(QUERY)?;
    let mut data = Dataset::default();
    for (i, row) in rows.iter().enumerate() {
        let x = parse_f32_array(row.text("x")?)?;
        let y: i64 = row.parse("y")?;
        push_sample(&mut data, x, y, format_args!("row {} of table train", i + 1))?;
    }
    Ok(data)
}

/// A CSV of `DIM` feature columns then the label (0 or 1); a header line is allowed
/// and blank lines are skipped.
pub fn parse_csv(text: &str) -> Result<Dataset, String> {
    let mut data = Dataset::default();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if line.trim().is_empty() || (i == 0 && fields[0].parse::<f32>().is_err()) {
            continue;
        }
        let line_no = i + 1;
        let (label, features) = fields.split_last().expect("split yields at least one field");
        let x = features
            .iter()
            .map(|f| f.parse::<f32>().map_err(|_| format!("line {line_no}: {f:?} is not a number")))
            .collect::<Result<Vec<f32>, String>>()?;
        let y = label.parse::<i64>().map_err(|_| format!("line {line_no}: the label {label:?} is not 0 or 1"))?;
        push_sample(&mut data, x, y, format_args!("line {line_no}")).map_err(|e| e.message)?;
    }
    Ok(data)
}

fn push_sample(data: &mut Dataset, x: Vec<f32>, y: i64, at: impl Display) -> Result<(), AppError> {
    if x.len() != DIM {
        return Err(AppError::new(format!("{at}: {} features, expected {DIM}", x.len())));
    }
    if !(y == 0 || y == 1) {
        return Err(AppError::new(format!("{at}: the label is {y}, expected 0 or 1")));
    }
    data.x.extend(x);
    data.y.push(y as f32);
    Ok(())
}
