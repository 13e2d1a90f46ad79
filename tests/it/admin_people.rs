//! The administration API's people resources over real HTTPS: organisations, domains,
//! departments, persons, secret IDs, lockouts and the CSV import, with an API key of an
//! MRAO made through the RA in-process, and the bad input every route must refuse with the
//! field named and nothing changed.

use estgate::domain::Role;
use serde_json::{json, Value};

use crate::support::{start, Server};

struct Api {
    server: Server,
    token: String,
}

struct Answer {
    status: u16,
    body: Value,
    etag: Option<String>,
    media: String,
}

impl Api {
    async fn start() -> Api {
        let server = start().await;
        let (_, token) = server
            .admin_key("it-mrao@example.org", Role::Mrao, vec![], vec![])
            .await;
        Api { server, token }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let auth = format!("Bearer {}", self.token);
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        self.send_as(method, path, &all, body).await
    }

    async fn send_as(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let mut c = self.server.connect().await;
        let r = c.request(method, path, headers, body).await.unwrap();
        Answer {
            status: r.status,
            body: serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            etag: r.header("etag").map(str::to_string),
            media: r.header("content-type").unwrap_or("").to_string(),
        }
    }

    async fn json(&self, method: &str, path: &str, body: Value) -> Answer {
        self.send(
            method,
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
        .await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, &[], b"").await
    }
}

/// A refusal: the status, a problem document, and the field it names.
fn refused(a: &Answer, status: u16, field: Option<&str>) {
    assert_eq!(a.status, status, "{}", a.body);
    assert!(
        a.media.starts_with("application/problem+json"),
        "{}",
        a.media
    );
    if let Some(f) = field {
        assert_eq!(a.body["field"], f, "{}", a.body);
    }
}

async fn new_org(api: &Api, name: &str, domain: &str) -> Value {
    let a = api
        .json(
            "POST",
            "/api/v1/organisations",
            json!({"name": name, "domains": [domain]}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body
}

#[tokio::test]
async fn organisations_domains_and_departments_over_https() {
    let api = Api::start().await;
    let org = new_org(&api, "Acme", "Acme.Test").await;
    let id = org["id"].as_i64().unwrap();
    assert_eq!(org["domains"], json!(["acme.test"]));
    let shown = api.get(&format!("/api/v1/organisations/{id}")).await;
    assert_eq!(shown.status, 200);
    let etag = shown.etag.clone().unwrap();
    assert_eq!(etag, format!("\"v{}\"", org["version"]));
    // A domain another organisation has: 409 naming it; a bad one: 400 naming the field.
    let a = api
        .json(
            "POST",
            &format!("/api/v1/organisations/{id}/domains"),
            json!({"domain": "example.org"}),
        )
        .await;
    refused(&a, 409, Some("domain"));
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("Example Organisation"),
        "{}",
        a.body
    );
    let a = api
        .json(
            "POST",
            &format!("/api/v1/organisations/{id}/domains"),
            json!({"domain": "no spaces.test"}),
        )
        .await;
    refused(&a, 400, Some("domain"));
    let a = api
        .json(
            "POST",
            &format!("/api/v1/organisations/{id}/domains"),
            json!({"domain": "acme.example"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["domains"], json!(["acme.test", "acme.example"]));
    let a = api
        .send(
            "DELETE",
            &format!("/api/v1/organisations/{id}/domains/acme.test"),
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = api
        .send(
            "DELETE",
            &format!("/api/v1/organisations/{id}/domains/acme.example"),
            &[],
            b"",
        )
        .await;
    refused(&a, 409, None);
    // Stale If-Match: 412, nothing changed.
    let a = api
        .send(
            "PATCH",
            &format!("/api/v1/organisations/{id}"),
            &[("Content-Type", "application/json"), ("If-Match", &etag)],
            json!({"name": "Acme Two"}).to_string().as_bytes(),
        )
        .await;
    refused(&a, 412, None);
    let current = api.get(&format!("/api/v1/organisations/{id}")).await;
    assert_eq!(current.body["name"], "Acme");
    let a = api
        .send(
            "PATCH",
            &format!("/api/v1/organisations/{id}"),
            &[
                ("Content-Type", "application/json"),
                ("If-Match", current.etag.as_deref().unwrap()),
            ],
            json!({"name": "Acme Two", "organization_identifier": "VATDE-123456789"})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["organization_identifier"], "VATDE-123456789");
    let a = api
        .json(
            "PATCH",
            &format!("/api/v1/organisations/{id}"),
            json!({"organization_identifier": "bogus"}),
        )
        .await;
    refused(&a, 400, Some("organization_identifier"));
    // Departments.
    let dept = api
        .json(
            "POST",
            &format!("/api/v1/organisations/{id}/departments"),
            json!({"name": "Ops"}),
        )
        .await;
    assert_eq!(dept.status, 201, "{}", dept.body);
    assert_eq!(dept.body["organisation_name"], "Acme Two");
    let d = dept.body["id"].as_i64().unwrap();
    let a = api
        .json(
            "POST",
            &format!("/api/v1/organisations/{id}/departments"),
            json!({"name": "Ops"}),
        )
        .await;
    refused(&a, 409, Some("name"));
    let list = api
        .get(&format!("/api/v1/organisations/{id}/departments"))
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let a = api
        .json(
            "PATCH",
            &format!("/api/v1/departments/{d}"),
            json!({"name": "Operations"}),
        )
        .await;
    assert_eq!(
        (a.status, a.body["name"].as_str()),
        (200, Some("Operations"))
    );
    assert!(a.etag.is_some());
    let all = api.get("/api/v1/organisations").await;
    assert!(all.body["items"].as_array().unwrap().len() >= 2);
    // Referenced: 409 naming what refers to it.
    let a = api
        .send("DELETE", &format!("/api/v1/organisations/{id}"), &[], b"")
        .await;
    refused(&a, 409, None);
    assert!(
        a.body["detail"].as_str().unwrap().contains("1 department"),
        "{}",
        a.body
    );
    assert_eq!(
        api.send("DELETE", &format!("/api/v1/departments/{d}"), &[], b"")
            .await
            .status,
        204
    );
    assert_eq!(
        api.get(&format!("/api/v1/departments/{d}")).await.status,
        404
    );
    assert_eq!(
        api.send("DELETE", &format!("/api/v1/organisations/{id}"), &[], b"")
            .await
            .status,
        204
    );
    assert_eq!(
        api.get(&format!("/api/v1/organisations/{id}")).await.status,
        404
    );
    api.server.stop().await;
}

#[tokio::test]
async fn persons_over_https() {
    let api = Api::start().await;
    let org = new_org(&api, "Beta", "beta.test").await;
    let id = org["id"].as_i64().unwrap();
    let dept = api
        .json(
            "POST",
            &format!("/api/v1/organisations/{id}/departments"),
            json!({"name": "Lab"}),
        )
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let a = api
        .send(
            "POST",
            "/api/v1/persons",
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", "p-1"),
            ],
            json!({"organisation": id, "department": dept, "email": "Ann@Beta.test",
                   "first_name": "Ann", "last_name": "Lee", "secret_id": "generate"})
            .to_string()
            .as_bytes(),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let person = a.body["person"].clone();
    let pid = person["id"].as_i64().unwrap();
    assert_eq!(person["email"], "ann@beta.test");
    assert_eq!(person["department_name"], "Lab");
    assert_eq!(person["organisation_name"], "Beta");
    assert_eq!(person["has_secret_id"], true);
    assert_eq!(a.body["secret_id"].as_str().unwrap().len(), 20);
    // A retry with the same key answers again without a second person or the secret.
    let again = api
        .send(
            "POST",
            "/api/v1/persons",
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", "p-1"),
            ],
            json!({"organisation": id, "department": dept, "email": "Ann@Beta.test",
                   "first_name": "Ann", "last_name": "Lee", "secret_id": "generate"})
            .to_string()
            .as_bytes(),
        )
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body["person"]["id"], pid);
    assert_ne!(again.body["secret_id"], a.body["secret_id"]);
    // Duplicate email: 409 naming the field.
    let dup = api
        .json(
            "POST",
            "/api/v1/persons",
            json!({"organisation": id, "email": "ann@beta.test", "last_name": "X"}),
        )
        .await;
    refused(&dup, 409, Some("email"));
    let shown = api.get(&format!("/api/v1/persons/{pid}")).await;
    let etag = shown.etag.clone().unwrap();
    let edit = |tag: String, body: Value| {
        let api = &api;
        async move {
            api.send(
                "PATCH",
                &format!("/api/v1/persons/{pid}"),
                &[("Content-Type", "application/json"), ("If-Match", &tag)],
                body.to_string().as_bytes(),
            )
            .await
        }
    };
    let a = edit(
        etag.clone(),
        json!({"middle_name": "Q", "department": null}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        (a.body["middle_name"].as_str(), &a.body["department"]),
        (Some("Q"), &Value::Null)
    );
    refused(&edit(etag, json!({"last_name": "Lost"})).await, 412, None);
    let list = api
        .get(&format!("/api/v1/persons?organisation={id}&q=ann&limit=1"))
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["items"][0]["id"], pid);
    let a = api
        .send(
            "POST",
            &format!("/api/v1/persons/{pid}/secret-id"),
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["secret_id"].as_str().unwrap().len(), 20);
    let a = api
        .json(
            "POST",
            &format!("/api/v1/persons/{pid}/secret-id"),
            json!({"secret_id": "my-own-secret"}),
        )
        .await;
    assert_eq!(a.body["secret_id"], "my-own-secret");
    let a = api
        .json(
            "POST",
            &format!("/api/v1/persons/{pid}/secret-id"),
            json!({"secret_id": "short"}),
        )
        .await;
    refused(&a, 400, Some("secret_id"));
    // Eleven characters are too few (issue 10), on a reset and on a new person alike, and
    // change nothing: the secret ID set above stays, and no person is added.
    let a = api
        .json(
            "POST",
            &format!("/api/v1/persons/{pid}/secret-id"),
            json!({"secret_id": "abcdefghijk"}),
        )
        .await;
    refused(&a, 400, Some("secret_id"));
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("12 to 128 characters"),
        "{}",
        a.body
    );
    let a = api
        .json(
            "POST",
            "/api/v1/persons",
            json!({"organisation": id, "email": "abe@beta.test", "last_name": "Short",
                   "secret_id": "abc"}),
        )
        .await;
    refused(&a, 400, Some("secret_id"));
    let found = api.get("/api/v1/persons?email=abe@beta.test").await;
    assert_eq!(found.body["items"], json!([]), "{}", found.body);
    let a = api
        .send("POST", &format!("/api/v1/persons/{pid}/unlock"), &[], b"")
        .await;
    assert_eq!((a.status, &a.body["cleared_failures"]), (200, &json!(0)));
    let a = api
        .send("POST", &format!("/api/v1/persons/{pid}/disable"), &[], b"")
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["person"]["status"], "disabled");
    assert_eq!(a.body["revoked_certificates"], json!([]));
    let disabled = api
        .get(&format!(
            "/api/v1/persons?status=disabled&organisation={id}"
        ))
        .await;
    assert_eq!(disabled.body["items"].as_array().unwrap().len(), 1);
    let a = api
        .send("POST", &format!("/api/v1/persons/{pid}/enable"), &[], b"")
        .await;
    assert_eq!(a.body["status"], "active");
    let a = api
        .send("DELETE", &format!("/api/v1/persons/{pid}"), &[], b"")
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["person"]["status"], "deleted");
    let listed = api.get(&format!("/api/v1/persons?organisation={id}")).await;
    assert_eq!(listed.body["items"], json!([]));
    let deleted = api
        .get(&format!("/api/v1/persons?organisation={id}&status=deleted"))
        .await;
    assert_eq!(deleted.body["items"][0]["id"], pid);
    // The address is free again.
    let a = api
        .json(
            "POST",
            "/api/v1/persons",
            json!({"organisation": id, "email": "ann@beta.test", "last_name": "Lee"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["secret_id"], Value::Null);
    // Out of an RAO's sight: 404; in sight but an MRAO's to change: 403.
    let other = new_org(&api, "Gamma", "gamma.test").await["id"]
        .as_i64()
        .unwrap();
    let (_, rao) = api
        .server
        .admin_key("it-rao@example.org", Role::Rao, vec![other], vec![])
        .await;
    let bearer = format!("Bearer {rao}");
    let new_pid = a.body["person"]["id"].as_i64().unwrap();
    let a = api
        .send_as(
            "GET",
            &format!("/api/v1/persons/{new_pid}"),
            &[("Authorization", &bearer)],
            b"",
        )
        .await;
    refused(&a, 404, None);
    let a = api
        .send_as(
            "GET",
            &format!("/api/v1/organisations/{id}"),
            &[("Authorization", &bearer)],
            b"",
        )
        .await;
    refused(&a, 404, None);
    let a = api
        .send_as(
            "POST",
            &format!("/api/v1/organisations/{other}/domains"),
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            br#"{"domain": "gamma.example"}"#,
        )
        .await;
    refused(&a, 403, None);
    let list = api
        .send_as("GET", "/api/v1/persons", &[("Authorization", &bearer)], b"")
        .await;
    assert_eq!(list.body["items"], json!([]));
    api.server.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_changing_nothing() {
    let api = Api::start().await;
    let org = new_org(&api, "Delta", "delta.test").await;
    let id = org["id"].as_i64().unwrap();
    let count = || async {
        api.get(&format!("/api/v1/persons?organisation={id}&limit=500"))
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .len()
    };
    let cases = [
        (
            json!({"organisation": id, "email": "a@delta.test", "last_name": "A", "colour": 1}),
            400,
            "colour",
        ),
        (
            json!({"organisation": "one", "email": "a@delta.test", "last_name": "A"}),
            400,
            "organisation",
        ),
        (
            json!({"organisation": id, "email": "not-an-email", "last_name": "A"}),
            400,
            "email",
        ),
        (
            json!({"organisation": id, "email": "a@elsewhere.test", "last_name": "A"}),
            400,
            "email",
        ),
        (
            json!({"organisation": id, "email": "a@delta.test"}),
            400,
            "last_name",
        ),
        (
            json!({"organisation": id, "department": 999999, "email": "a@delta.test", "last_name": "A"}),
            400,
            "department",
        ),
        (
            json!({"organisation": 999999, "email": "a@delta.test", "last_name": "A"}),
            404,
            "organisation",
        ),
    ];
    for (body, status, field) in cases {
        let a = api.json("POST", "/api/v1/persons", body.clone()).await;
        refused(&a, status, Some(field));
    }
    let a = api
        .json(
            "POST",
            "/api/v1/organisations",
            json!({"name": "Bad", "domains": ["-bad-.test"]}),
        )
        .await;
    refused(&a, 400, Some("domains[0]"));
    let a = api
        .json(
            "POST",
            "/api/v1/organisations",
            json!({"name": "Bad", "domains": "bad.test"}),
        )
        .await;
    refused(&a, 400, Some("domains"));
    let a = api
        .send(
            "POST",
            "/api/v1/persons",
            &[("Content-Type", "text/plain")],
            br#"{"organisation": 1, "email": "a@delta.test"}"#,
        )
        .await;
    refused(&a, 415, None);
    let big = format!(
        r#"{{"organisation": {id}, "email": "a@delta.test", "last_name": "{}"}}"#,
        "x".repeat(300_000)
    );
    let a = api
        .send(
            "POST",
            "/api/v1/persons",
            &[("Content-Type", "application/json")],
            big.as_bytes(),
        )
        .await;
    refused(&a, 413, None);
    let a = api.get("/api/v1/persons?status=gone").await;
    refused(&a, 400, Some("status"));
    assert!(a.body["detail"]
        .as_str()
        .unwrap()
        .contains("active, disabled, deleted"));
    let a = api.get("/api/v1/persons?colour=red").await;
    refused(&a, 400, Some("colour"));
    let a = api.get("/api/v1/persons?organisation=x").await;
    refused(&a, 400, Some("organisation"));
    assert_eq!(count().await, 0);
    let orgs = api.get("/api/v1/organisations").await;
    assert!(orgs.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["name"] != "Bad"));
    api.server.stop().await;
}

#[tokio::test]
async fn person_import_over_https() {
    let api = Api::start().await;
    let org = new_org(&api, "Epsilon", "epsilon.test").await;
    let id = org["id"].as_i64().unwrap();
    api.json(
        "POST",
        &format!("/api/v1/organisations/{id}/departments"),
        json!({"name": "Sales"}),
    )
    .await;
    let path = format!("/api/v1/organisations/{id}/persons/import");
    let csv = "email,first_name,middle_name,last_name,department,secret_id\n\
               a@epsilon.test,A,,Alpha,Sales,generate\n\
               b@elsewhere.test,B,,Beta,,\n\
               c@epsilon.test,C,,Gamma,Nowhere,\n";
    let a = api
        .send(
            "POST",
            &format!("{path}?dry_run=true"),
            &[("Content-Type", "text/csv")],
            csv.as_bytes(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["applied"], false);
    assert_eq!(
        a.body["errors"],
        json!([
            {"line": 3, "field": "email", "reason": a.body["errors"][0]["reason"]},
            {"line": 4, "field": "department", "reason": a.body["errors"][1]["reason"]},
        ])
    );
    let a = api
        .send(
            "POST",
            &path,
            &[("Content-Type", "text/csv")],
            csv.as_bytes(),
        )
        .await;
    refused(&a, 422, Some("body"));
    assert_eq!(a.body["errors"].as_array().unwrap().len(), 2);
    let persons = api.get(&format!("/api/v1/persons?organisation={id}")).await;
    assert_eq!(persons.body["items"], json!([]));
    let good = "email,first_name,middle_name,last_name,department,secret_id\n\
                a@epsilon.test,A,,Alpha,Sales,generate\n\
                b@epsilon.test,B,,Beta,,\n";
    let a = api
        .send(
            "POST",
            &path,
            &[("Content-Type", "text/csv; charset=utf-8")],
            good.as_bytes(),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["created"].as_array().unwrap().len(), 2);
    assert_eq!(
        a.body["created"][0]["secret_id"].as_str().unwrap().len(),
        20
    );
    assert_eq!(a.body["created"][1]["secret_id"], Value::Null);
    let persons = api.get(&format!("/api/v1/persons?organisation={id}")).await;
    assert_eq!(persons.body["items"][0]["department_name"], "Sales");
    let a = api
        .send(
            "POST",
            &path,
            &[("Content-Type", "application/json")],
            b"{}",
        )
        .await;
    refused(&a, 415, None);
    api.server.stop().await;
}
