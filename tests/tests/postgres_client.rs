//! `sepal_sdk::postgres` (what Wasm apps use to read a site's database), run natively
//! against a real PostgreSQL server: every login method the client offers, the errors an
//! app author reads, and results of a real table.

use sepal_sdk::postgres::{parse_f32_array, Client, PgError};
use sepal_tests::postgres::Postgres;

fn server() -> (tempfile::TempDir, Postgres) {
    let logs = tempfile::tempdir().unwrap();
    let pg = Postgres::start(logs.path()).unwrap();
    // One role per login method, each only over loopback TCP (the client's only path).
    for (role, method) in [("scram", "scram-sha-256"), ("md5", "md5"), ("plain", "password")] {
        pg.psql(
            "postgres",
            &format!("SET password_encryption = 'scram-sha-256'; CREATE ROLE {role} LOGIN PASSWORD 's3cret'"),
        )
        .unwrap();
        if method == "md5" {
            // An MD5 login needs an MD5-hashed password.
            pg.psql("postgres", "SET password_encryption = 'md5'; ALTER ROLE md5 PASSWORD 's3cret'").unwrap();
        }
        pg.prepend_hba(&format!("host all {role} 127.0.0.1/32 {method}")).unwrap();
    }
    (logs, pg)
}

fn url(pg: &Postgres, user_password: &str, db: &str) -> String {
    format!("postgres://{user_password}@{}/{db}", pg.addr())
}

#[test]
fn logs_in_every_way_it_offers_and_reads_rows() {
    let (_logs, pg) = server();
    pg.psql(
        "postgres",
        "CREATE TABLE train (x real[] NOT NULL, y smallint NOT NULL); \
                         INSERT INTO train VALUES ('{1.5,-2,0.25}', 1), ('{}', 0); GRANT SELECT ON train TO PUBLIC",
    )
    .unwrap();
    for user in ["fl", "scram:s3cret", "md5:s3cret", "plain:s3cret"] {
        let mut db = Client::connect(&url(&pg, user, "postgres")).unwrap_or_else(|e| panic!("{user}: {e}"));
        let rows = db.simple_query("SELECT x, y, NULL AS z FROM train ORDER BY y DESC").unwrap();
        assert_eq!(rows.len(), 2, "{user}");
        assert_eq!(rows[0].columns(), ["x", "y", "z"]);
        assert_eq!(parse_f32_array(rows[0].text("x").unwrap()).unwrap(), vec![1.5, -2.0, 0.25]);
        assert_eq!(rows[0].parse::<i16>("y").unwrap(), 1);
        assert_eq!(rows[1].get(2), None, "NULL");
        assert!(parse_f32_array(rows[1].text("x").unwrap()).unwrap().is_empty());
    }
}

#[test]
fn errors_say_what_failed_and_a_failed_query_leaves_the_connection_usable() {
    let (_logs, pg) = server();
    let err = Client::connect(&url(&pg, "scram:wrong", "postgres")).unwrap_err();
    assert!(matches!(&err, PgError::Server { code, .. } if code == "28P01"), "{err:?}");
    assert!(err.to_string().contains("password authentication failed for user \"scram\""), "{err}");

    let err = Client::connect(&url(&pg, "scram", "postgres")).unwrap_err();
    assert!(matches!(err, PgError::PasswordRequired { .. }), "{err:?}");

    let err = Client::connect(&url(&pg, "fl", "site_c")).unwrap_err();
    assert!(err.to_string().contains("3D000: database \"site_c\" does not exist"), "{err}");

    let mut db = Client::connect(&url(&pg, "fl", "postgres")).unwrap();
    let err = db.simple_query("SELECT x FROM no_such_table").unwrap_err();
    assert!(err.to_string().contains("42P01") && err.to_string().contains("no_such_table"), "{err}");
    let rows = db.simple_query("SELECT 1 AS one; SELECT 2 AS two").unwrap();
    assert_eq!(rows.iter().map(|r| r.get(0).unwrap()).collect::<Vec<_>>(), ["1", "2"]);
}
