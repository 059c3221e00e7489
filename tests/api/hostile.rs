//! Hostile and careless requests: oversized bodies, malformed JSON, deep and wide queries,
//! page sizes beyond the cap, invalid codes and amounts, SQL-looking text (stored verbatim,
//! harmless), request rates over the limit; and a fuzz run over every mutation's input type
//! (discovered by introspection) that must never produce a server error or leak internals.

use integration::{TestApp, both_backends, spawn_app, spawn_app_with};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

async fn post_raw(app: &TestApp, body: Vec<u8>, content_type: &str) -> (u16, Value) {
    let r = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("content-type", content_type)
        .header("accept", "application/graphql-response+json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Words that must never reach a client: database and runtime internals.
const LEAKS: [&str; 9] =
    ["sqlx", "SQLSTATE", "INSERT INTO", "SELECT ", "panicked", "stack backtrace", "database error", "pg_", "sqlite"];

fn assert_no_leak(body: &Value) {
    let text = body.to_string();
    for word in LEAKS {
        assert!(!text.contains(word), "a response leaks `{word}`: {text}");
    }
}

both_backends!(oversized_bodies_and_malformed_json_are_4xx_with_a_code, |db| async move {
    let app = spawn_app(db).await;
    let huge = format!("{{\"query\":\"{{ __typename }}\",\"variables\":{{\"pad\":\"{}\"}}}}", "x".repeat(1_100_000));
    let (status, body) = post_raw(&app, huge.into_bytes(), "application/json").await;
    assert_eq!((status, body["errors"][0]["extensions"]["code"].as_str()), (413, Some("PAYLOAD_TOO_LARGE")));
    for bad in ["{", "[]", "{\"query\": 5}", "{\"query\":\"{ __typename }\",\"variables\":[1]}", "\u{0}"] {
        let (status, body) = post_raw(&app, bad.as_bytes().to_vec(), "application/json").await;
        assert_eq!(status, 400, "{bad:?}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST", "{bad:?}");
    }
    let (status, _) = post_raw(&app, b"query { __typename }".to_vec(), "text/plain").await;
    assert_eq!(status, 415);
    app.db.drop_db().await;
});

both_backends!(deep_and_wide_queries_and_big_pages_are_refused, |db| async move {
    let app = spawn_app(db).await;
    let deep = "{ __schema { types { fields { type { fields { type { fields { type { fields { type { fields { type { name } } } } } } } } } } } } }";
    let r = app.gql(None, deep, json!({})).await;
    assert_eq!(r.status, 400);
    assert!(r.error()["message"].as_str().unwrap().contains("nested too deep"), "{}", r.body);
    // Real fields: 2,000 aliased page queries (complexity 6,000; __typename alone is free).
    let wide: String = (0..2000).map(|i| format!("a{i}: brokers(first: 1) {{ nodes {{ id }} }} ")).collect();
    let r = app.gql(None, &format!("{{ {wide} }}"), json!({})).await;
    assert_eq!(r.status, 400);
    assert!(r.error()["message"].as_str().unwrap().contains("too complex"), "{}", r.body);
    let r = app.gql(None, "{ organisations(first: 501) { nodes { id } } }", json!({})).await;
    assert_eq!((r.error_code(), r.error()["extensions"]["rule"].as_str()), ("VALIDATION_FAILED", Some("page_size")));
    app.db.drop_db().await;
});

both_backends!(invalid_codes_and_amounts_name_the_field_and_the_rule, |db| async move {
    let app = spawn_app(db).await;
    let admin = app.admin();
    let org = |code: &str, division: &str| json!({ "name": "X", "kind": "ENTERPRISE", "creditCode": code, "divisionCode": division });
    for (input, field, rule) in [
        (org("9111000060003734", "500112"), "creditCode", "credit_code_format"),
        (org("91110000600037341M", "500112"), "creditCode", "credit_code_check"),
        (org("91110000600037341L", "5001"), "divisionCode", "division_code_format"),
        (org("91110000600037341L", "990000"), "divisionCode", "division_code_province"),
    ] {
        let r = app.try_mutate(&admin, "registerOrganisation", input, None).await;
        assert_eq!(r.error_code(), "VALIDATION_FAILED");
        assert_eq!(
            (r.error()["extensions"]["field"].as_str(), r.error()["extensions"]["rule"].as_str()),
            (Some(field), Some(rule))
        );
    }
    let seller = app.mutate(&admin, "registerOrganisation", org("91110000600037341L", "500112")).await;
    let staff = app.token(ledger::Role::ResearchInstitution, Some(seller), None);
    let r = app
        .try_mutate(&staff, "listAchievement", json!({ "ownerId": seller, "title": "t", "field": "AGRICULTURE", "maturity": 3, "transferModes": ["LICENCE"],
            "patentNumbers": ["ZL201710601862.4"], "completers": [{ "name": "a", "share": "100" }] }), None)
        .await;
    assert_eq!(
        (r.error()["extensions"]["field"].as_str(), r.error()["extensions"]["rule"].as_str()),
        (Some("patentNumbers[0]"), Some("patent_number_check"))
    );
    for (amount, rule) in [
        ("1.001", "amount_two_decimals"),
        ("-5.00", "amount_positive"),
        ("0", "amount_positive"),
        ("1e3", "amount_format"),
        ("1000000000000", "amount_below_limit"),
    ] {
        let r = app
            .try_mutate(&app.registrar(), "signContract", json!({
                "contractNumber": "C", "contractType": "SERVICE", "title": "t", "sellerId": seller, "buyerId": seller,
                "contractAmount": amount, "techTransactionAmount": "1.00", "signedOn": "2024-01-01"
            }), None)
            .await;
        let text = r.body.to_string();
        assert!(text.contains(rule), "{amount}: {text}");
        assert_eq!(r.error_code(), "VALIDATION_FAILED", "{amount}");
    }
    let r = app.try_mutate(&admin, "registerBroker", json!({ "name": "x".repeat(201) }), None).await;
    assert_eq!(
        (r.error()["extensions"]["field"].as_str(), r.error()["extensions"]["rule"].as_str()),
        (Some("name"), Some("max_length"))
    );
    // Found by the fuzz run below: a NUL in an idempotency key reached PostgreSQL (500).
    let r = app.try_mutate(&admin, "registerBroker", json!({ "name": "王" }), Some("key\u{0}1")).await;
    assert_eq!(r.error_code(), "VALIDATION_FAILED");
    assert_eq!(
        (r.error()["extensions"]["field"].as_str(), r.error()["extensions"]["rule"].as_str()),
        (Some("idempotencyKey"), Some("no_control_characters"))
    );
    app.db.drop_db().await;
});

both_backends!(sql_looking_text_is_stored_verbatim_and_harmless, |db| async move {
    let app = spawn_app(db).await;
    let name = "Robert'); DROP TABLE events; -- 重庆\"大学\" %_\\";
    let id = app
        .mutate(
            &app.admin(),
            "registerOrganisation",
            json!({ "name": name, "kind": "UNIVERSITY", "creditCode": "91110000600037341L", "divisionCode": "500106" }),
        )
        .await;
    let r = app.gql(None, "query($id: UUID!) { organisation(id: $id) { name } }", json!({ "id": id })).await;
    assert_eq!(r.data()["organisation"]["name"], name);
    let like =
        app.gql(None, "{ organisations(filter: { divisionCodePrefix: \"%\" }) { nodes { id } } }", json!({})).await;
    assert!(like.data()["organisations"]["nodes"].as_array().unwrap().is_empty(), "% is not a wildcard");
    let finance = app.token(ledger::Role::Finance, None, None);
    let v = app.gql(Some(&finance), "{ verifyLedger { intact eventsChecked } }", json!({})).await;
    assert_eq!(v.data()["verifyLedger"], json!({ "intact": true, "eventsChecked": 1 }));
    app.db.drop_db().await;
});

both_backends!(a_caller_over_the_rate_limit_gets_429_with_retry_after, |db| async move {
    let app = spawn_app_with(db, |args| {
        args.limits.rate_per_second = 1;
        args.limits.rate_burst = 3;
    })
    .await;
    let token = app.admin();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = app
            .client
            .post(format!("{}/graphql", app.address))
            .bearer_auth(&token)
            .json(&json!({ "query": "{ __typename }" }))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status().as_u16() == 429 {
            assert!(r.headers().get("retry-after").is_some());
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
        }
    }
    assert_eq!(&statuses[..3], [200, 200, 200], "the burst passes");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    // Another caller has its own bucket.
    let other = app.gql(Some(&app.registrar()), "{ __typename }", json!({})).await;
    assert_eq!(other.status, 200);
    app.db.drop_db().await;
});

both_backends!(metrics_and_request_ids_are_exposed, |db| async move {
    let app = spawn_app(db).await;
    app.mutate(&app.admin(), "registerBroker", json!({ "name": "王" })).await;
    let r = app.client.get(format!("{}/health", app.address)).send().await.unwrap();
    assert!(r.headers().get("x-request-id").is_some(), "responses carry the request id of their log lines");
    let text = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    for metric in [
        "techmarket_http_requests_total",
        "techmarket_http_requests_duration_seconds",
        "techmarket_events_appended_total 1",
        "techmarket_append_batches_total 1",
        "techmarket_append_batch_requests_total 1",
        "techmarket_append_batch_seconds_count 1",
        "techmarket_append_batch_size_bucket{le=\"1\"} 1",
        // The broker's stream was new: looked for in the cache, not found.
        "techmarket_state_cache_hits_total 0",
        "techmarket_state_cache_misses_total",
        "techmarket_concurrency_conflicts_total",
        "techmarket_projection_lag_events",
    ] {
        assert!(text.contains(metric), "missing {metric} in:\n{text}");
    }
    app.db.drop_db().await;
});

/// A random value for a GraphQL input type: often valid in shape, often not.
fn fuzz_value(rng: &mut StdRng, ty: &Value, types: &Map<String, Value>, depth: u32) -> Value {
    let kind = ty["kind"].as_str().unwrap_or("");
    if kind == "NON_NULL" {
        return fuzz_value(rng, &ty["ofType"], types, depth);
    }
    if rng.random_bool(0.08) {
        // The wrong shape entirely.
        return [json!(null), json!(12345678901234i64), json!(-1.5), json!(true), json!([]), json!({}), json!("")]
            [rng.random_range(0..7)]
        .clone();
    }
    match kind {
        "LIST" if depth < 3 => Value::Array(
            (0..rng.random_range(0..4)).map(|_| fuzz_value(rng, &ty["ofType"], types, depth + 1)).collect(),
        ),
        "INPUT_OBJECT" if depth < 3 => {
            let name = ty["name"].as_str().unwrap_or("");
            let fields = types[name]["inputFields"].as_array().cloned().unwrap_or_default();
            let mut object = Map::new();
            for f in &fields {
                if rng.random_bool(0.9) {
                    object
                        .insert(f["name"].as_str().unwrap().to_owned(), fuzz_value(rng, &f["type"], types, depth + 1));
                }
            }
            Value::Object(object)
        }
        "ENUM" => {
            let name = ty["name"].as_str().unwrap_or("");
            let values = types[name]["enumValues"].as_array().cloned().unwrap_or_default();
            if values.is_empty() || rng.random_bool(0.1) {
                json!("NOT_A_VALUE")
            } else {
                values[rng.random_range(0..values.len())]["name"].clone()
            }
        }
        _ => {
            let samples = [
                json!(uuid::Uuid::now_v7().to_string()),
                json!("2024-02-30"),
                json!("2024-12-31T23:59:00+08:00"),
                json!("12345.67"),
                json!("0.001"),
                json!("99999999999999999999"),
                json!("x'); DROP TABLE events; --"),
                json!("\u{0}\u{1}\u{7f}控制"),
                json!("重庆".repeat(rng.random_range(0..400))),
                json!("91110000600037341L"),
                json!("ZL201710601862.3"),
                json!(rng.random::<i32>()),
                json!(rng.random::<f64>()),
                json!(null),
            ];
            samples[rng.random_range(0..samples.len())].clone()
        }
    }
}

both_backends!(fuzzing_every_mutation_input_finds_no_server_error, |db| async move {
    let app = spawn_app(db).await;
    let introspection = app
        .gql(None, "{ __schema { mutationType { fields { name args { name type { kind name ofType { kind name ofType { kind name } } } } } } types { name kind enumValues { name } inputFields { name type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }", json!({}))
        .await;
    let schema = introspection.data()["__schema"].clone();
    let types: Map<String, Value> = schema["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_owned(), t.clone()))
        .collect();
    let mutations = schema["mutationType"]["fields"].as_array().unwrap().clone();
    assert!(mutations.len() >= 19, "every mutation is fuzzed");
    let seed = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("fuzz seed {seed} (FUZZ_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let tokens = [
        app.admin(),
        app.registrar(),
        app.token(ledger::Role::Finance, None, None),
        app.token(ledger::Role::ResearchInstitution, Some(uuid::Uuid::now_v7()), None),
    ];
    let mut statuses = std::collections::BTreeMap::new();
    for case in 0..400 {
        let m = &mutations[case % mutations.len()];
        let name = m["name"].as_str().unwrap();
        let args: Vec<String> = m["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| format!("${}: {}", a["name"].as_str().unwrap(), type_ref(&a["type"])))
            .collect();
        let pass: Vec<String> =
            m["args"].as_array().unwrap().iter().map(|a| format!("{0}: ${0}", a["name"].as_str().unwrap())).collect();
        let variables: Map<String, Value> = m["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["name"].as_str().unwrap().to_owned(), fuzz_value(&mut rng, &a["type"], &types, 0)))
            .collect();
        let query = format!("mutation({}) {{ {name}({}) {{ id }} }}", args.join(", "), pass.join(", "));
        let token = &tokens[rng.random_range(0..tokens.len())];
        let r = app
            .client
            .post(format!("{}/graphql", app.address))
            .bearer_auth(token)
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or_else(|e| panic!("seed {seed} case {case}: not JSON ({e})"));
        assert!(status < 500, "seed {seed} case {case}: {name} answered {status}: {body}");
        assert!(body.get("data").is_some() || body.get("errors").is_some(), "seed {seed}: {body}");
        for e in body["errors"].as_array().into_iter().flatten() {
            let code =
                e["extensions"]["code"].as_str().unwrap_or_else(|| panic!("seed {seed}: an error without a code: {e}"));
            assert_ne!(code, "INTERNAL", "seed {seed} case {case}: {name} hit an internal error: {e}");
        }
        assert_no_leak(&body);
        *statuses.entry(status).or_insert(0) += 1;
    }
    println!("fuzz statuses: {statuses:?}");
    app.db.drop_db().await;
});

/// `String!`, `[TransferMode!]`, `RecordPaymentInput!` from an introspected type.
fn type_ref(ty: &Value) -> String {
    match ty["kind"].as_str().unwrap_or("") {
        "NON_NULL" => format!("{}!", type_ref(&ty["ofType"])),
        "LIST" => format!("[{}]", type_ref(&ty["ofType"])),
        _ => ty["name"].as_str().unwrap_or("String").to_owned(),
    }
}
