//! The enrollment setup API (profiles, endpoints, accounts) over real HTTPS: every route,
//! bad input answered with a problem naming the field and nothing changed, and an account
//! made through the API that really enrolls over EST.

use estgate::domain::{Id, Role};
use estgate_bench::{basic_auth, make_csrs, Response};
use estgate_protocol::transfer;
use serde_json::{json, Value};

use crate::support::{openssl_verify, single_cert, start, Server};

struct Api<'a> {
    s: &'a Server,
    token: String,
}

impl Api<'_> {
    async fn call(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("Authorization", auth.as_str()), ("User-Agent", "it")];
        if !body.is_empty() && !extra.iter().any(|(n, _)| *n == "Content-Type") {
            headers.push(("Content-Type", "application/json"));
        }
        headers.extend_from_slice(extra);
        let mut c = self.s.connect().await;
        c.request(method, path, &headers, body).await.unwrap()
    }

    async fn send(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .call(method, path, &[], body.to_string().as_bytes())
            .await;
        (r.status, parse(&r))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.call("GET", path, &[], b"").await;
        (r.status, parse(&r))
    }
}

fn parse(r: &Response) -> Value {
    if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.body_text()))
    }
}

/// An API key of a new administrator with `role` (RAO: of `orgs`).
async fn key_for(s: &Server, role: Role, orgs: Vec<Id>, email: &str) -> String {
    s.admin_key(email, role, orgs, Vec::new()).await.1
}

async fn mrao(s: &Server) -> Api<'_> {
    Api {
        s,
        token: key_for(s, Role::Mrao, Vec::new(), "mrao@it.example").await,
    }
}

/// The demo organisation's id and its person profile's id.
async fn demo_ids(api: &Api<'_>) -> (Id, Id) {
    let (st, eps) = api.get("/api/v1/endpoints").await;
    assert_eq!(st, 200, "{eps}");
    let org = eps["items"][0]["organisation"].as_i64().unwrap();
    let (st, profiles) = api.get("/api/v1/profiles").await;
    assert_eq!(st, 200, "{profiles}");
    let person = profiles["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["subject_source"] == "person" && p["smime"].is_null())
        .or_else(|| {
            profiles["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["subject_source"] == "person")
        })
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    (org, person)
}

#[tokio::test]
async fn profiles_endpoints_and_accounts_round_trip() {
    let s = start().await;
    let api = mrao(&s).await;
    let (org, _) = demo_ids(&api).await;

    // Profiles.
    let (st, p) = api
        .send(
            "POST",
            "/api/v1/profiles",
            json!({"name": "it-devices", "subject_source": "device",
                   "key_types": ["ec-p256", "rsa-3072"], "terms_years": [1, 2],
                   "requires_approval": false}),
        )
        .await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(p["default_key_type"], "ec-p256");
    let pid = p["id"].as_i64().unwrap();
    let r = api
        .call("GET", &format!("/api/v1/profiles/{pid}"), &[], b"")
        .await;
    assert_eq!(r.status, 200);
    let etag = r.header("etag").unwrap().to_string();
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/profiles/{pid}"),
            &[("If-Match", &etag)],
            br#"{"default_term_years": 2}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(parse(&r)["default_term_years"], 2);
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/profiles/{pid}"),
            &[("If-Match", &etag)],
            br#"{"default_term_years": 1}"#,
        )
        .await;
    assert_eq!(r.status, 412, "{}", r.body_text());
    let (st, dup) = api
        .send(
            "POST",
            "/api/v1/profiles",
            json!({"name": "it-devices", "subject_source": "device",
                   "key_types": ["ec-p256"], "terms_years": [1]}),
        )
        .await;
    assert_eq!(st, 409, "{dup}");
    assert_eq!(dup["field"], "name");
    assert!(dup["detail"].as_str().unwrap().contains(&pid.to_string()));

    // Endpoints.
    let (st, e) = api
        .send(
            "POST",
            "/api/v1/endpoints",
            json!({"organisation": org, "name": "IT endpoint",
                   "auth_types": ["secret-id"], "eula_text": "Be nice."}),
        )
        .await;
    assert_eq!(st, 201, "{e}");
    let eid = e["id"].as_i64().unwrap();
    let ext = e["uri_extension"].as_str().unwrap().to_string();
    assert!(ext.len() >= 20);
    let url = e["enrollment_url"].as_str().unwrap();
    assert!(
        url.starts_with("https://") && url.ends_with(&format!("/enroll/{ext}")),
        "{url}"
    );
    let (st, dup) = api
        .send(
            "POST",
            "/api/v1/endpoints",
            json!({"organisation": org, "name": "IT endpoint", "auth_types": ["secret-id"]}),
        )
        .await;
    assert_eq!(st, 409, "{dup}");
    assert!(
        dup["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("endpoint {eid} \"IT endpoint\"")),
        "{dup}"
    );
    let (st, list) = api
        .get(&format!("/api/v1/endpoints?organisation={org}&limit=500"))
        .await;
    assert_eq!(st, 200);
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == eid));
    let (st, e2) = api
        .send(
            "POST",
            &format!("/api/v1/endpoints/{eid}/uri-extension"),
            Value::Null,
        )
        .await;
    assert_eq!(st, 200, "{e2}");
    assert_ne!(e2["uri_extension"], ext);
    let (st, e3) = api
        .send(
            "PATCH",
            &format!("/api/v1/endpoints/{eid}"),
            json!({"help_text": "Call us."}),
        )
        .await;
    assert_eq!((st, e3["help_text"].as_str()), (200, Some("Call us.")));

    // Accounts.
    let r = api
        .call(
            "POST",
            "/api/v1/accounts",
            &[("Idempotency-Key", "acct-1")],
            json!({"endpoint": eid, "name": "IT devices", "profiles": [pid],
                   "csr_method": "client", "authorization": "access-code",
                   "est_label": "it-devices"})
            .to_string()
            .as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body_text());
    let a = parse(&r);
    let aid = a["id"].as_i64().unwrap();
    let code = a["access_code"].as_str().unwrap().to_string();
    assert!(code.len() >= 20);
    // A retry with the same key answers the same account without the code again.
    let r = api
        .call(
            "POST",
            "/api/v1/accounts",
            &[("Idempotency-Key", "acct-1")],
            json!({"endpoint": eid, "name": "IT devices", "profiles": [pid],
                   "csr_method": "client", "authorization": "access-code",
                   "est_label": "it-devices"})
            .to_string()
            .as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201);
    let replay = parse(&r);
    assert_eq!(replay["id"], aid);
    assert_ne!(replay["access_code"].as_str(), Some(code.as_str()));
    let (st, got) = api.get(&format!("/api/v1/accounts/{aid}")).await;
    assert_eq!(st, 200);
    assert!(got.get("access_code").is_none(), "{got}");
    let (st, list) = api.get(&format!("/api/v1/accounts?endpoint={eid}")).await;
    assert_eq!(st, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (st, dup) = api
        .send(
            "POST",
            "/api/v1/accounts",
            json!({"endpoint": eid, "name": "Other", "profiles": [pid],
                   "csr_method": "client", "authorization": "none", "est_label": "it-devices"}),
        )
        .await;
    assert_eq!(
        (st, dup["field"].as_str()),
        (409, Some("est_label")),
        "{dup}"
    );
    assert!(dup["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("account {aid}")));
    let (st, rot) = api
        .send(
            "POST",
            &format!("/api/v1/accounts/{aid}/access-code"),
            Value::Null,
        )
        .await;
    assert_eq!(st, 200, "{rot}");
    let new_code = rot["access_code"].as_str().unwrap();
    assert_ne!(new_code, code);
    let (st, ed) = api
        .send(
            "PATCH",
            &format!("/api/v1/accounts/{aid}"),
            json!({"est_label": null, "csr_method": "both"}),
        )
        .await;
    assert_eq!(st, 200, "{ed}");
    assert!(ed["est_label"].is_null() && ed["csr_method"] == "both");

    // Deleting: the profile and endpoint wait for the account.
    let r = api
        .call("DELETE", &format!("/api/v1/profiles/{pid}"), &[], b"")
        .await;
    assert_eq!(r.status, 409, "{}", r.body_text());
    let r = api
        .call("DELETE", &format!("/api/v1/endpoints/{eid}"), &[], b"")
        .await;
    assert_eq!(r.status, 409, "{}", r.body_text());
    let r = api
        .call("DELETE", &format!("/api/v1/accounts/{aid}"), &[], b"")
        .await;
    assert_eq!(r.status, 204, "{}", r.body_text());
    assert_eq!(api.get(&format!("/api/v1/accounts/{aid}")).await.0, 404);
    let r = api
        .call("DELETE", &format!("/api/v1/endpoints/{eid}"), &[], b"")
        .await;
    assert_eq!(r.status, 204, "{}", r.body_text());
    assert_eq!(api.get(&format!("/api/v1/endpoints/{eid}")).await.0, 404);
    // Its form is gone.
    let ext = e2["uri_extension"].as_str().unwrap();
    let mut c = s.connect().await;
    let r = c
        .request(
            "GET",
            &format!("/enroll/{ext}"),
            &[("User-Agent", "it")],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = api
        .call("DELETE", &format!("/api/v1/profiles/{pid}"), &[], b"")
        .await;
    assert_eq!(r.status, 204, "{}", r.body_text());
    assert_eq!(api.get(&format!("/api/v1/profiles/{pid}")).await.0, 404);
    s.stop().await;
}

#[tokio::test]
async fn an_rao_reads_profiles_but_cannot_make_them() {
    let s = start().await;
    let api = mrao(&s).await;
    let (org, _) = demo_ids(&api).await;
    let rao = Api {
        s: &s,
        token: key_for(&s, Role::Rao, vec![org], "rao@it.example").await,
    };
    assert_eq!(rao.get("/api/v1/profiles").await.0, 200);
    let (st, p) = rao
        .send(
            "POST",
            "/api/v1/profiles",
            json!({"name": "x", "subject_source": "device", "key_types": ["ec-p256"],
                   "terms_years": [1]}),
        )
        .await;
    assert_eq!(st, 403, "{p}");
    let (st, e) = rao
        .send(
            "POST",
            "/api/v1/endpoints",
            json!({"organisation": org, "name": "RAO endpoint", "auth_types": ["secret-id"]}),
        )
        .await;
    assert_eq!(st, 201, "{e}");
    s.stop().await;
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let s = start().await;
    let api = mrao(&s).await;
    let (org, pid) = demo_ids(&api).await;
    let count = |v: &Value| v["items"].as_array().unwrap().len();
    let before_p = count(&api.get("/api/v1/profiles").await.1);
    let before_e = count(&api.get("/api/v1/endpoints").await.1);
    let before_a = count(&api.get("/api/v1/accounts").await.1);
    let ep = json!({"organisation": org, "name": "Bad", "auth_types": ["secret-id"]});

    let cases: Vec<(&str, Value, &str, Option<&str>)> = vec![
        (
            "/api/v1/endpoints",
            json!({"organisation": org, "name": "Bad",
            "auth_types": ["secret-id"], "colour": "red"}),
            "colour",
            None,
        ),
        (
            "/api/v1/endpoints",
            json!({"organisation": org, "name": "Bad",
            "auth_types": ["password"]}),
            "auth_types[0]",
            Some("email-confirmation"),
        ),
        (
            "/api/v1/endpoints",
            json!({"organisation": "one", "name": "Bad",
            "auth_types": ["secret-id"]}),
            "organisation",
            None,
        ),
        (
            "/api/v1/endpoints",
            json!({"organisation": org, "name": "Bad",
            "auth_types": ["secret-id"], "uri_extension": "tooShort"}),
            "uri_extension",
            None,
        ),
        (
            "/api/v1/endpoints",
            json!({"organisation": org, "name": "Bad",
            "auth_types": ["secret-id"], "help_link_target": "javascript:x"}),
            "help_link_target",
            None,
        ),
        (
            "/api/v1/profiles",
            json!({"name": "bad", "subject_source": "robot",
            "key_types": ["ec-p256"], "terms_years": [1]}),
            "subject_source",
            Some("device"),
        ),
        (
            "/api/v1/profiles",
            json!({"name": "bad", "subject_source": "device",
            "key_types": ["dsa-1024"], "terms_years": [1]}),
            "key_types[0]",
            Some("ec-p384"),
        ),
        (
            "/api/v1/profiles",
            json!({"name": "bad", "subject_source": "device",
            "key_types": ["ec-p256"], "terms_years": [5]}),
            "terms_years[0]",
            None,
        ),
        (
            "/api/v1/profiles",
            json!({"name": "bad", "subject_source": "device",
            "key_types": ["ec-p256"], "terms_years": [1], "default_key_type": "rsa-2048"}),
            "default_key_type",
            None,
        ),
        (
            "/api/v1/accounts",
            json!({"endpoint": 1, "name": "Bad", "profiles": [pid],
            "csr_method": "sometimes", "authorization": "none"}),
            "csr_method",
            Some("both"),
        ),
        (
            "/api/v1/accounts",
            json!({"endpoint": 1, "name": "Bad", "profiles": [pid],
            "csr_method": "both", "authorization": "none", "est_label": "simpleenroll"}),
            "est_label",
            None,
        ),
        (
            "/api/v1/accounts",
            json!({"endpoint": 1, "name": "Bad", "profiles": [pid, 99999],
            "csr_method": "both", "authorization": "none"}),
            "profiles[1]",
            None,
        ),
        (
            "/api/v1/accounts",
            json!({"endpoint": 1, "name": "Bad", "profiles": [pid],
            "csr_method": "both", "authorization": "none", "is_default": "yes"}),
            "is_default",
            None,
        ),
    ];
    for (path, body, field, lists) in cases {
        let (st, p) = api.send("POST", path, body.clone()).await;
        assert_eq!(st, 400, "{path} {body}: {p}");
        assert_eq!(p["field"], field, "{path} {body}: {p}");
        if let Some(allowed) = lists {
            assert!(p["detail"].as_str().unwrap().contains(allowed), "{p}");
        }
    }
    // Wrong content type, oversized body.
    let r = api
        .call(
            "POST",
            "/api/v1/endpoints",
            &[("Content-Type", "text/plain")],
            ep.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.body_text());
    let big = json!({"organisation": org, "name": "Bad", "auth_types": ["secret-id"],
                     "help_text": "x".repeat(300 * 1024)});
    let r = api
        .call("POST", "/api/v1/endpoints", &[], big.to_string().as_bytes())
        .await;
    assert_eq!(r.status, 413, "{}", r.body_text());
    // Nothing was made.
    assert_eq!(count(&api.get("/api/v1/profiles").await.1), before_p);
    assert_eq!(count(&api.get("/api/v1/endpoints").await.1), before_e);
    assert_eq!(count(&api.get("/api/v1/accounts").await.1), before_a);
    s.stop().await;
}

#[tokio::test]
async fn an_account_made_through_the_api_enrolls_over_est() {
    let s = start().await;
    let api = mrao(&s).await;
    let (org, pid) = demo_ids(&api).await;
    let (st, e) = api
        .send(
            "POST",
            "/api/v1/endpoints",
            json!({"organisation": org, "name": "API-made", "auth_types": ["secret-id"]}),
        )
        .await;
    assert_eq!(st, 201, "{e}");
    let (st, a) = api
        .send(
            "POST",
            "/api/v1/accounts",
            json!({"endpoint": e["id"], "name": "API-made", "profiles": [pid],
                   "csr_method": "client", "authorization": "none",
                   "est_label": "api-made"}),
        )
        .await;
    assert_eq!(st, 201, "{a}");
    // The demo person authenticates with their secret ID (authorization none).
    let (user, pass) = s.password("staff");
    let csr = make_csrs("ec-p256", "ignored.example.com", 1)
        .unwrap()
        .remove(0)
        .0;
    let body = transfer::encode_base64(&csr, transfer::Wrap::Columns64);
    let auth = basic_auth(&user, &pass);
    let headers = [
        ("Content-Type", "application/pkcs10"),
        ("Authorization", auth.as_str()),
        ("User-Agent", "it"),
    ];
    let mut c = s.connect().await;
    let r = c
        .request(
            "POST",
            "/.well-known/est/api-made/simpleenroll",
            &headers,
            body.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    let der = single_cert(&r);
    openssl_verify(&s, &der, None);
    // Deleted, it no longer enrolls.
    let aid = a["id"].as_i64().unwrap();
    let r = api
        .call("DELETE", &format!("/api/v1/accounts/{aid}"), &[], b"")
        .await;
    assert_eq!(r.status, 204);
    let mut c = s.connect().await;
    let r = c
        .request(
            "POST",
            "/.well-known/est/api-made/simpleenroll",
            &headers,
            body.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.body_text());
    s.stop().await;
}

/// `bind_device_names` set and cleared over the API decides over EST whether a device may
/// name another host than its Basic username; the option is refused where it would mean
/// nothing.
#[tokio::test]
async fn bind_device_names_over_the_api_binds_the_csr_to_the_username() {
    let s = start().await;
    let api = mrao(&s).await;
    let (org, person_profile) = demo_ids(&api).await;
    let (_, profiles) = api.get("/api/v1/profiles").await;
    let device = profiles["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["subject_source"] == "device")
        .unwrap()["id"]
        .clone();
    let (st, e) = api
        .send(
            "POST",
            "/api/v1/endpoints",
            json!({"organisation": org, "name": "Bound", "auth_types": ["secret-id"]}),
        )
        .await;
    assert_eq!(st, 201, "{e}");
    // Without an access code the username is no device identifier; nor on a person profile.
    for (body, why) in [
        (
            json!({"endpoint": e["id"], "name": "Bound", "profiles": [device],
                   "csr_method": "client", "authorization": "none", "bind_device_names": true}),
            "needs authorization access-code",
        ),
        (
            json!({"endpoint": e["id"], "name": "Bound", "profiles": [person_profile],
                   "csr_method": "client", "authorization": "access-code", "bind_device_names": true}),
            "needs a device profile first",
        ),
    ] {
        let (st, p) = api.send("POST", "/api/v1/accounts", body).await;
        assert_eq!(st, 400, "{p}");
        assert_eq!(p["field"], "bind_device_names", "{p}");
        assert!(p.to_string().contains(why), "{p}");
    }
    let (st, a) = api
        .send(
            "POST",
            "/api/v1/accounts",
            json!({"endpoint": e["id"], "name": "Bound", "profiles": [device],
                   "csr_method": "client", "authorization": "access-code",
                   "access_code": "bound-code-1", "est_label": "bound",
                   "bind_device_names": true}),
        )
        .await;
    assert_eq!(st, 201, "{a}");
    assert_eq!(a["bind_device_names"], true, "{a}");
    let enroll = |user: &'static str, cn: &'static str| {
        let s = &s;
        async move {
            let csr = make_csrs("ec-p256", cn, 1).unwrap().remove(0).0;
            let body = transfer::encode_base64(&csr, transfer::Wrap::Columns64);
            let auth = basic_auth(user, "bound-code-1");
            let headers = [
                ("Content-Type", "application/pkcs10"),
                ("Authorization", auth.as_str()),
                ("User-Agent", "it"),
            ];
            let mut c = s.connect().await;
            c.request(
                "POST",
                "/.well-known/est/bound/simpleenroll",
                &headers,
                body.as_bytes(),
            )
            .await
            .unwrap()
        }
    };
    let r = enroll("cam-1.example.org", "cam-2.example.org").await;
    assert_eq!(r.status, 403, "{}", r.body_text());
    assert!(
        r.body_text().contains("not cam-2.example.org"),
        "{}",
        r.body_text()
    );
    let r = enroll("cam-1.example.org", "cam-1.example.org").await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    openssl_verify(&s, &single_cert(&r), None);
    // Cleared, the code holder may name any host of the organisation again.
    let aid = a["id"].as_i64().unwrap();
    let (st, a) = api
        .send(
            "PATCH",
            &format!("/api/v1/accounts/{aid}"),
            json!({"bind_device_names": false}),
        )
        .await;
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["bind_device_names"], false, "{a}");
    let r = enroll("cam-1.example.org", "cam-2.example.org").await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    s.stop().await;
}
