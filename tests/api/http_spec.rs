//! GraphQL-over-HTTP compliance: the `graphql-http` package's audit suite (npm), run against
//! a real server on each engine. Every MUST audit has to pass. Needs Node.js and
//! `npm ci --prefix tests/audit` (the test command does both).

use std::path::PathBuf;
use std::process::Command;

use integration::{both_backends, spawn_app};

fn audit_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/audit"))
}

both_backends!(the_graphql_http_audit_suite_finds_no_failed_must, |db| async move {
    let dir = audit_dir();
    assert!(
        dir.join("node_modules/graphql-http").exists(),
        "the audit suite is not installed: run `npm ci --prefix tests/audit` (Node.js 18 or later), or use ./scripts/test"
    );
    let app = spawn_app(db).await;
    let url = format!("{}/graphql", app.address);
    let output =
        tokio::task::spawn_blocking(move || Command::new("node").arg("audit.mjs").arg(&url).current_dir(&dir).output())
            .await
            .unwrap()
            .expect("node runs (install Node.js 18 or later)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "graphql-http audit failed:\n{stdout}");
    assert!(stdout.contains("0 error"), "{stdout}");
    app.db.drop_db().await;
});

both_backends!(graphiql_opens_in_a_browser_and_mutations_need_post, |db| async move {
    let app = spawn_app(db).await;
    let page = app.client.get(format!("{}/graphql", app.address)).header("accept", "text/html").send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("graphiql"));
    let get_mutation = app
        .client
        .get(format!("{}/graphql", app.address))
        .query(&[("query", "mutation { registerBroker(input: {name: \"x\"}) { id } }")])
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(get_mutation.status().as_u16(), 405);
    let health = app.client.get(format!("{}/health", app.address)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready = app.client.get(format!("{}/ready", app.address)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    app.db.drop_db().await;
});
