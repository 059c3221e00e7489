//! The committed SDL (`schema.graphql`) is the live schema: a change to the API that is not
//! reflected there (run `techmarket print-schema`) fails here.

#[test]
fn schema_graphql_matches_the_live_schema() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql"))
        .expect("schema.graphql at the repository root");
    let live = api::graphql::sdl();
    assert!(
        committed == live,
        "schema.graphql is out of date: run `cargo run -p api -- print-schema` and commit the result"
    );
}
