//! The simulator's scenario files, as a user writes them: parsed and checked, or refused with
//! the place of the mistake.

use ruche_operator::sim::scenario::Scenario;

/// Parses `data` as a scenario file.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Scenario::parse(text, "fuzz.yaml") {
        assert_eq!(e.file, "fuzz.yaml");
        assert!(!e.to_string().is_empty());
    }
}
