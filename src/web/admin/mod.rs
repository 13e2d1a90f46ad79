//! Administration over HTTPS: the JSON API under `/api/v1` (and, later, the console under
//! `/admin/`). Handlers translate HTTP to RA verbs; every decision is the RA's.

pub mod api;

use axum::Router;

use super::AppState;

pub fn routes() -> Router<AppState> {
    api::routes()
}
