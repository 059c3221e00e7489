//! Plays the ledger's random scenario (`ledger::testkit::Scenario`) against a real store,
//! through the real command handler. Refusals are expected; any other failure stops the test
//! with the seed that reproduces it.

use ledger::service::Ledger;
use ledger::testkit::Scenario;

use crate::fixtures::ctx;

/// The seed from `SCENARIO_SEED`, or a fresh one; printed so a failure can be replayed.
pub fn seed_from_env() -> u64 {
    let seed = std::env::var("SCENARIO_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("scenario seed: {seed} (set SCENARIO_SEED={seed} to replay)");
    seed
}

/// Runs `steps` commands; returns (accepted, refused).
pub async fn play(ledger: &Ledger, scenario: &mut Scenario, steps: usize) -> (usize, usize) {
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..steps {
        let (actor, command) = scenario.next_command();
        let fingerprint = format!("{command:?}");
        match ledger.execute(&ctx(actor), command, &fingerprint).await {
            Ok(_) => {
                accepted += 1;
                scenario.observe(true);
            }
            Err(e) => {
                assert!(
                    matches!(
                        e.code(),
                        "VALIDATION_FAILED" | "RULE_VIOLATED" | "NOT_FOUND" | "ALREADY_EXISTS" | "FORBIDDEN"
                    ),
                    "seed {}: unexpected failure {e}",
                    scenario.seed
                );
                refused += 1;
                scenario.observe(false);
            }
        }
    }
    (accepted, refused)
}
