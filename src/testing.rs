//! Test support shared by the unit tests and the integration tests: a fake clock and a
//! fresh database per test (SQLite in a temp dir, or a new PostgreSQL database when
//! `ESTGATE_TEST_DATABASE_URL` names a server). Not used by the server itself.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::domain::{Clock, UnixTime};

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct FakeClock(AtomicI64);

impl FakeClock {
    pub fn at(t: UnixTime) -> Arc<FakeClock> {
        Arc::new(FakeClock(AtomicI64::new(t)))
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

/// A database URL for one test: a new PostgreSQL database on the server named by
/// `ESTGATE_TEST_DATABASE_URL`, else an SQLite file in `dir`.
pub async fn database_url(dir: &std::path::Path) -> Result<String, String> {
    let Ok(base) = std::env::var("ESTGATE_TEST_DATABASE_URL") else {
        return Ok(format!(
            "sqlite://{}?mode=rwc",
            dir.join("test.db").display()
        ));
    };
    use sea_orm::{ConnectionTrait, Database};
    let name = format!(
        "estgate_t_{}",
        crate::domain::generate_secret(12)
            .expose()
            .to_ascii_lowercase()
    );
    let db = Database::connect(&base).await.map_err(|e| e.to_string())?;
    db.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .map_err(|e| e.to_string())?;
    let _ = db.close().await;
    let (prefix, _) = base
        .rsplit_once('/')
        .ok_or_else(|| "ESTGATE_TEST_DATABASE_URL has no database name".to_string())?;
    Ok(format!("{prefix}/{name}"))
}
