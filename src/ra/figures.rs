//! The operator's figures (`/metrics`): what this process counted (`crate::metrics`) and
//! what is read when scraped: group commits, the connection pool and the outbox. The outbox
//! figures are the database's, so every process behind one balancer reports the same queue.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::Ra;
use crate::error::Error;
use crate::metrics::{header, render_histogram};

impl Ra {
    /// Every figure in the Prometheus text format.
    pub async fn metrics_text(&self) -> Result<String, Error> {
        let mut out = String::with_capacity(16 * 1024);
        self.metrics.render(&mut out);

        let batch = self.store.batch_stats();
        for (name, kind, help, value) in [
            (
                "estgate_group_commits_total",
                "counter",
                "Transactions that stored issued certificates (group commits).",
                batch.commits.load(Ordering::Relaxed),
            ),
            (
                "estgate_group_commit_failures_total",
                "counter",
                "Group commits that failed; each of their requests was answered 503.",
                batch.failed_commits.load(Ordering::Relaxed),
            ),
            (
                "estgate_group_commit_largest",
                "gauge",
                "The most issuances one group commit has carried since start.",
                batch.largest.load(Ordering::Relaxed),
            ),
        ] {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        render_histogram(
            &mut out,
            "estgate_group_commit_size",
            "Issuances per committed group commit.",
            &batch.sizes,
        );
        render_histogram(
            &mut out,
            "estgate_group_commit_duration_seconds",
            "Time to write and commit one group commit, committed or failed.",
            &batch.commit_seconds,
        );

        let name = "estgate_db_pool_connections";
        header(
            &mut out,
            name,
            "gauge",
            "Database connections of this process by pool (main; reader, SQLite's read pool): open, idle among them, and the most the pool opens.",
        );
        for (pool, stats) in self.store.pool_stats() {
            for (state, n) in [
                ("open", stats.open),
                ("idle", stats.idle),
                ("max", stats.max),
            ] {
                let _ = writeln!(out, "{name}{{pool=\"{pool}\",state=\"{state}\"}} {n}");
            }
        }

        let pending = self.store.outbox_pending().await?;
        let failing = self.store.outbox_failing().await?;
        for (name, help, n) in [
            (
                "estgate_outbox_pending",
                "Emails queued and not yet sent (all processes).",
                pending,
            ),
            (
                "estgate_outbox_failing",
                "Emails not yet sent whose last attempt failed; each waits for a retry (all processes).",
                failing,
            ),
        ] {
            header(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {n}");
        }
        Ok(out)
    }
}
