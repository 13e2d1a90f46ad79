//! The role matrix over real HTTPS: MRAO, RAO and DRAO against every resource and verb,
//! inside and across organisation and department boundaries. An object a role may not see
//! answers 404; one it sees but may not change answers 403; a collection a role never uses
//! answers 403.

use estgate::domain::Role;
use estgate::ra::admin::Caller;
use serde_json::{json, Value};

use crate::admin::{admin_with_key, call, get, send};
use crate::support::{start, Server};

/// Two organisations: A (the demo's) with departments A1 and A2, B with department B1; a
/// person and a certificate in each department; an endpoint and account in each org.
struct World {
    org_a: i64,
    org_b: i64,
    dept_a1: i64,
    dept_a2: i64,
    dept_b1: i64,
    person_a1: i64,
    person_a2: i64,
    person_b1: i64,
    endpoint_a: i64,
    endpoint_b: i64,
    account_a: i64,
    account_b: i64,
    profile: i64,
    cert_a1: i64,
    cert_a2: i64,
    cert_b1: i64,
    order_a1: i64,
    order_a2: i64,
    order_b1: i64,
}

fn id(v: &Value, path: &[&str]) -> i64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_i64().unwrap_or_else(|| panic!("no id at {path:?}"))
}

async fn created(s: &Server, key: &str, path: &str, body: Value) -> Value {
    let a = send(s, "POST", path, key, body.clone()).await;
    assert_eq!(a.status, 201, "POST {path} {body}: {}", a.json);
    a.json
}

async fn certificate_for(s: &Server, key: &str, account: i64, email: &str) -> (i64, i64) {
    let ra = &s.running.as_ref().unwrap().ra;
    let op = Caller::operator("it");
    let acc = ra.account(&op, account).await.unwrap();
    let issued = ra
        .issue_with_server_key_as_admin(acc, email, None, op.actor())
        .await
        .unwrap();
    let found = get(
        s,
        &format!("/api/v1/certificates?serial={}", issued.issued.serial),
        key,
    )
    .await;
    let c = &found.json["items"][0];
    (id(c, &["id"]), id(c, &["order_id"]))
}

async fn world(s: &Server, key: &str) -> World {
    let orgs = get(s, "/api/v1/organisations", key).await;
    let org_a = id(&orgs.json["items"][0], &["id"]);
    let org_b = created(
        s,
        key,
        "/api/v1/organisations",
        json!({"name": "Other Org", "domains": ["other.example"],
               "organization_identifier": "NTRUS+DE-0000001"}),
    )
    .await;
    let org_b = id(&org_b, &["id"]);
    let dept = |org: i64, name: &str| {
        let name = name.to_string();
        async move {
            let d = created(
                s,
                key,
                &format!("/api/v1/organisations/{org}/departments"),
                json!({ "name": name }),
            )
            .await;
            id(&d, &["id"])
        }
    };
    let (dept_a1, dept_a2, dept_b1) = (
        dept(org_a, "A1").await,
        dept(org_a, "A2").await,
        dept(org_b, "B1").await,
    );
    let person = |org: i64, dept: i64, email: &str| {
        let email = email.to_string();
        async move {
            let p = created(
                s,
                key,
                "/api/v1/persons",
                json!({"organisation": org, "department": dept, "email": email,
                       "first_name": "P", "last_name": "Q"}),
            )
            .await;
            id(&p, &["person", "id"])
        }
    };
    let person_a1 = person(org_a, dept_a1, "a1@example.org").await;
    let person_a2 = person(org_a, dept_a2, "a2@example.org").await;
    let person_b1 = person(org_b, dept_b1, "b1@other.example").await;
    let profiles = get(s, "/api/v1/profiles", key).await;
    let profile = profiles.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "person")
        .map(|p| id(p, &["id"]))
        .unwrap();
    let endpoints = get(s, &format!("/api/v1/endpoints?organisation={org_a}"), key).await;
    let endpoint_a = id(&endpoints.json["items"][0], &["id"]);
    let accounts = get(s, &format!("/api/v1/accounts?organisation={org_a}"), key).await;
    let account_a = accounts.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "Visitors")
        .map(|a| id(a, &["id"]))
        .unwrap();
    let endpoint_b = created(
        s,
        key,
        "/api/v1/endpoints",
        json!({"organisation": org_b, "name": "B form", "auth_types": ["secret-id"]}),
    )
    .await;
    let endpoint_b = id(&endpoint_b, &["id"]);
    let account_b = created(
        s,
        key,
        "/api/v1/accounts",
        json!({"endpoint": endpoint_b, "name": "B staff", "profiles": [profile],
               "csr_method": "server", "authorization": "none"}),
    )
    .await;
    let account_b = id(&account_b, &["id"]);
    let (cert_a1, order_a1) = certificate_for(s, key, account_a, "a1@example.org").await;
    let (cert_a2, order_a2) = certificate_for(s, key, account_a, "a2@example.org").await;
    let (cert_b1, order_b1) = certificate_for(s, key, account_b, "b1@other.example").await;
    World {
        org_a,
        org_b,
        dept_a1,
        dept_a2,
        dept_b1,
        person_a1,
        person_a2,
        person_b1,
        endpoint_a,
        endpoint_b,
        account_a,
        account_b,
        profile,
        cert_a1,
        cert_a2,
        cert_b1,
        order_a1,
        order_a2,
        order_b1,
    }
}

/// One request and the status each role gets, tried in this order: (MRAO, RAO of A, DRAO of
/// A1); 0 = that role does not try it.
struct Case {
    method: &'static str,
    path: String,
    body: Option<Value>,
    expect: [u16; 3],
}

fn case(method: &'static str, path: String, body: Option<Value>, expect: [u16; 3]) -> Case {
    Case {
        method,
        path,
        body,
        expect,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_reaches_exactly_its_scope() {
    let s = start().await;
    let (_, mrao) = admin_with_key(&s, "mrao@example.org", Role::Mrao, vec![], vec![]).await;
    let w = world(&s, &mrao).await;
    let (_, rao) = admin_with_key(&s, "rao@example.org", Role::Rao, vec![w.org_a], vec![]).await;
    let (_, drao) =
        admin_with_key(&s, "drao@example.org", Role::Drao, vec![], vec![w.dept_a1]).await;
    let keys = [mrao.as_str(), rao.as_str(), drao.as_str()];
    let rename = |n: &str| Some(json!({ "name": n }));
    let names = |n: &str| Some(json!({ "first_name": n }));

    // Reads first, then changes that leave the world as the next case needs it.
    let cases = vec![
        // Organisations: visible to their RAOs and their departments' DRAOs; changed by MRAOs.
        case("GET", "/api/v1/organisations".into(), None, [200, 200, 200]),
        case(
            "GET",
            format!("/api/v1/organisations/{}", w.org_a),
            None,
            [200, 200, 200],
        ),
        case(
            "GET",
            format!("/api/v1/organisations/{}", w.org_b),
            None,
            [200, 404, 404],
        ),
        case(
            "PATCH",
            format!("/api/v1/organisations/{}", w.org_a),
            rename("Example Organisation"),
            [200, 403, 403],
        ),
        case(
            "PATCH",
            format!("/api/v1/organisations/{}", w.org_b),
            rename("Other Org"),
            [200, 404, 404],
        ),
        case(
            "POST",
            format!("/api/v1/organisations/{}/domains", w.org_a),
            Some(json!({"domain": "x.example.org"})),
            [201, 403, 403],
        ),
        case(
            "DELETE",
            format!("/api/v1/organisations/{}", w.org_b),
            None,
            [409, 404, 404],
        ),
        case(
            "POST",
            "/api/v1/organisations".into(),
            Some(json!({"name": "New", "domains": ["new.example"]})),
            [201, 403, 403],
        ),
        // Departments: an RAO manages its organisations'; a DRAO sees its own only.
        case(
            "GET",
            format!("/api/v1/organisations/{}/departments", w.org_a),
            None,
            [200, 200, 200],
        ),
        case(
            "GET",
            format!("/api/v1/departments/{}", w.dept_a1),
            None,
            [200, 200, 200],
        ),
        case(
            "GET",
            format!("/api/v1/departments/{}", w.dept_a2),
            None,
            [200, 200, 404],
        ),
        case(
            "GET",
            format!("/api/v1/departments/{}", w.dept_b1),
            None,
            [200, 404, 404],
        ),
        case(
            "PATCH",
            format!("/api/v1/departments/{}", w.dept_a1),
            rename("A1"),
            [200, 200, 403],
        ),
        case(
            "PATCH",
            format!("/api/v1/departments/{}", w.dept_b1),
            rename("B1"),
            [200, 404, 404],
        ),
        case(
            "DELETE",
            format!("/api/v1/departments/{}", w.dept_b1),
            None,
            [409, 404, 404],
        ),
        // Persons: a DRAO manages its department's, across the boundary it sees nothing.
        case(
            "GET",
            format!("/api/v1/persons/{}", w.person_a1),
            None,
            [200, 200, 200],
        ),
        case(
            "GET",
            format!("/api/v1/persons/{}", w.person_a2),
            None,
            [200, 200, 404],
        ),
        case(
            "GET",
            format!("/api/v1/persons/{}", w.person_b1),
            None,
            [200, 404, 404],
        ),
        case(
            "PATCH",
            format!("/api/v1/persons/{}", w.person_a1),
            names("P"),
            [200, 200, 200],
        ),
        case(
            "PATCH",
            format!("/api/v1/persons/{}", w.person_a2),
            names("P"),
            [200, 200, 404],
        ),
        case(
            "PATCH",
            format!("/api/v1/persons/{}", w.person_b1),
            names("P"),
            [200, 404, 404],
        ),
        // Moving a person out of the DRAO's department is not the DRAO's to do.
        case(
            "PATCH",
            format!("/api/v1/persons/{}", w.person_a1),
            Some(json!({"department": w.dept_a2})),
            [0, 0, 403],
        ),
        case(
            "PATCH",
            format!("/api/v1/persons/{}", w.person_a1),
            Some(json!({"department": w.dept_a2})),
            [200, 200, 0],
        ),
        case(
            "PATCH",
            format!("/api/v1/persons/{}", w.person_a1),
            names("P"),
            [200, 200, 404],
        ),
        case(
            "PATCH",
            format!("/api/v1/persons/{}", w.person_a1),
            Some(json!({"department": w.dept_a1})),
            [200, 200, 200],
        ),
        case(
            "POST",
            format!("/api/v1/persons/{}/unlock", w.person_b1),
            None,
            [200, 404, 404],
        ),
        case(
            "POST",
            "/api/v1/persons".into(),
            Some(
                json!({"organisation": w.org_b, "email": "new-b@other.example", "first_name": "N"}),
            ),
            [201, 404, 404],
        ),
        // Profiles: global; RAOs read them, MRAOs change them, DRAOs do not use them.
        case("GET", "/api/v1/profiles".into(), None, [200, 200, 403]),
        case(
            "GET",
            format!("/api/v1/profiles/{}", w.profile),
            None,
            [200, 200, 404],
        ),
        case(
            "PATCH",
            format!("/api/v1/profiles/{}", w.profile),
            Some(json!({"requires_approval": false})),
            [200, 403, 404],
        ),
        // Endpoints and accounts: an RAO's within its organisations, never a DRAO's.
        case("GET", "/api/v1/endpoints".into(), None, [200, 200, 403]),
        case(
            "GET",
            format!("/api/v1/endpoints/{}", w.endpoint_a),
            None,
            [200, 200, 404],
        ),
        case(
            "GET",
            format!("/api/v1/endpoints/{}", w.endpoint_b),
            None,
            [200, 404, 404],
        ),
        case(
            "PATCH",
            format!("/api/v1/endpoints/{}", w.endpoint_b),
            Some(json!({"help_text": "x"})),
            [200, 404, 404],
        ),
        case(
            "DELETE",
            format!("/api/v1/endpoints/{}", w.endpoint_b),
            None,
            [409, 404, 404],
        ),
        case("GET", "/api/v1/accounts".into(), None, [200, 200, 403]),
        case(
            "GET",
            format!("/api/v1/accounts/{}", w.account_a),
            None,
            [200, 200, 404],
        ),
        case(
            "GET",
            format!("/api/v1/accounts/{}", w.account_b),
            None,
            [200, 404, 404],
        ),
        case(
            "PATCH",
            format!("/api/v1/accounts/{}", w.account_a),
            Some(json!({"allow_empty_pkcs12_password": false})),
            [200, 200, 404],
        ),
        case(
            "POST",
            format!("/api/v1/accounts/{}/access-code", w.account_b),
            None,
            [409, 404, 404],
        ),
        // Orders and certificates follow the account (RAO) or the person's department (DRAO).
        case("GET", "/api/v1/orders".into(), None, [200, 200, 200]),
        case(
            "GET",
            format!("/api/v1/orders/{}", w.order_a1),
            None,
            [200, 200, 200],
        ),
        case(
            "GET",
            format!("/api/v1/orders/{}", w.order_a2),
            None,
            [200, 200, 404],
        ),
        case(
            "GET",
            format!("/api/v1/orders/{}", w.order_b1),
            None,
            [200, 404, 404],
        ),
        case(
            "POST",
            format!("/api/v1/orders/{}/approve", w.order_b1),
            Some(json!({})),
            [409, 404, 404],
        ),
        case("GET", "/api/v1/certificates".into(), None, [200, 200, 200]),
        case(
            "GET",
            format!("/api/v1/certificates/{}", w.cert_a1),
            None,
            [200, 200, 200],
        ),
        case(
            "GET",
            format!("/api/v1/certificates/{}", w.cert_a2),
            None,
            [200, 200, 404],
        ),
        case(
            "GET",
            format!("/api/v1/certificates/{}/der", w.cert_b1),
            None,
            [200, 404, 404],
        ),
        case(
            "POST",
            format!("/api/v1/certificates/{}/revoke", w.cert_b1),
            Some(json!({"reason": "superseded"})),
            [200, 404, 404],
        ),
        case(
            "POST",
            format!("/api/v1/certificates/{}/revoke", w.cert_a2),
            Some(json!({"reason": "superseded"})),
            [200, 409, 404],
        ),
        // The audit trail: every role lists its own share; only an MRAO verifies the chain.
        case("GET", "/api/v1/audit-events".into(), None, [200, 200, 200]),
        case(
            "GET",
            "/api/v1/audit-events/verify".into(),
            None,
            [200, 403, 403],
        ),
        // Administrators: MRAOs appoint anyone, RAOs their DRAOs, DRAOs nobody.
        case("GET", "/api/v1/admins".into(), None, [200, 200, 200]),
        case(
            "POST",
            "/api/v1/admins".into(),
            Some(
                json!({"name": "N", "email": "n1@example.org", "role": "rao", "organisations": [w.org_b]}),
            ),
            [201, 400, 403],
        ),
        case(
            "POST",
            "/api/v1/admins".into(),
            Some(
                json!({"name": "N", "email": "n2@example.org", "role": "drao", "departments": [w.dept_a2]}),
            ),
            [201, 201, 403],
        ),
    ];

    let mut failures = Vec::new();
    for c in &cases {
        for (role, key) in ["mrao", "rao", "drao"].iter().zip(keys) {
            // Each role gets its own copy of a creating request, so names do not clash.
            let body = c.body.as_ref().map(|b| {
                let mut b = b.clone();
                for field in ["email", "name"] {
                    if let Some(v) = b.get(field).and_then(Value::as_str) {
                        if c.method == "POST"
                            && (c.path.ends_with("/admins") || c.path == "/api/v1/persons")
                        {
                            b[field] = json!(v.replace('@', &format!("-{role}@")));
                        } else if c.method == "POST" && c.path == "/api/v1/organisations" {
                            b[field] = json!(format!("{v} {role}"));
                            b["domains"] = json!([format!("{role}.new.example")]);
                        }
                    }
                }
                if c.path.ends_with("/domains") {
                    b["domain"] = json!(format!("{role}.x.example.org"));
                }
                b.to_string()
            });
            let want = c.expect[["mrao", "rao", "drao"]
                .iter()
                .position(|r| r == role)
                .unwrap()];
            if want == 0 {
                continue;
            }
            let a = call(
                &s,
                c.method,
                &c.path,
                Some(key),
                &[],
                body.as_deref().map(str::as_bytes),
            )
            .await;
            if a.status != want {
                failures.push(format!(
                    "{role} {} {}: {} (want {want}) {}",
                    c.method, c.path, a.status, a.json
                ));
            }
        }
    }
    assert!(failures.is_empty(), "role matrix:\n{}", failures.join("\n"));
    s.stop().await;
}

/// The `admin.refused` events as an MRAO reads them: (actor, object, detail).
async fn refused_events(s: &Server, mrao: &str) -> Vec<(String, String, String)> {
    let a = get(
        s,
        "/api/v1/audit-events?action=admin.refused&limit=500",
        mrao,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    a.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (field("actor"), field("object"), field("detail"))
        })
        .collect()
}

#[tokio::test]
async fn an_administrators_refused_requests_are_audited_and_repeats_coalesce() {
    let s = start().await;
    let (_, mrao) = admin_with_key(&s, "mrao@example.org", Role::Mrao, vec![], vec![]).await;
    let w = world(&s, &mrao).await;
    let (_, drao) =
        admin_with_key(&s, "drao@example.org", Role::Drao, vec![], vec![w.dept_a1]).await;
    assert!(refused_events(&s, &mrao).await.is_empty());
    // 403: a collection the DRAO never uses; 404: a person of another organisation.
    // Each twice, and the person also by a second id: repeats within a minute coalesce.
    for _ in 0..2 {
        assert_eq!(get(&s, "/api/v1/endpoints", &drao).await.status, 403);
        let other = format!("/api/v1/persons/{}", w.person_b1);
        assert_eq!(get(&s, &other, &drao).await.status, 404);
    }
    let other_dept = format!("/api/v1/persons/{}", w.person_a2);
    assert_eq!(get(&s, &other_dept, &drao).await.status, 404);
    // Not audited: an unauthenticated request, and an unknown route.
    let anonymous = call(&s, "GET", "/api/v1/endpoints", None, &[], None).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(get(&s, "/api/v1/no-such-thing", &drao).await.status, 404);
    // A request that succeeds is not a refusal either.
    assert_eq!(get(&s, "/api/v1/persons", &drao).await.status, 200);

    let events = refused_events(&s, &mrao).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let (actor, object, detail) = &events[0];
    assert!(actor.contains("drao@example.org"), "{actor}");
    assert_eq!(object, "GET /api/v1/endpoints");
    assert!(detail.contains("403 for /api/v1/endpoints"), "{detail}");
    let (_, object, detail) = &events[1];
    assert_eq!(object, "GET /api/v1/persons/{id}");
    assert!(
        detail.contains(&format!("404 for /api/v1/persons/{}", w.person_b1)),
        "{detail}"
    );
    // A DRAO does not read the trail of refusals outside its departments.
    let theirs = get(&s, "/api/v1/audit-events?action=admin.refused", &drao).await;
    assert_eq!(theirs.status, 200);
    assert_eq!(theirs.json["items"].as_array().unwrap().len(), 0);
    s.stop().await;
}
