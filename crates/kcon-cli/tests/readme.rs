//! The README's configuration table is the one the tables of properties make, concatenated as
//! the `kcon` tool takes them (the consumer's, the Processor's, the producer's, the Schema
//! Registry client's): this test fails, showing the expected table, when they differ, or when
//! the tables together give a name to two properties or disagree on one they share. `KCON_WRITE_README=1` makes it rewrite the README instead.

use std::path::Path;

use kcon::property::registry::{AnyProperty, erased, faults, markdown_table};

const START: &str = "<!-- properties: generated from the property tables of kcon's crates; \
                     rewrite with KCON_WRITE_README=1 cargo test -p kcon-cli --test readme -->";
const END: &str = "<!-- end of properties -->";

/// Every property the tool takes, in the README's order: the consumer's tables, then the
/// Processor's, the producer's and the Schema Registry client's.
fn properties() -> impl Iterator<Item = &'static dyn AnyProperty> + Clone {
    kcon::ConsumerBuilder::properties()
        .chain(kcon::Processor::properties())
        .chain(erased(kcon_produce::PROPERTIES))
        .chain(erased(kcon_schema_registry::PROPERTIES))
}

#[test]
fn the_tables_together_are_sound() {
    assert_eq!(faults(properties()), [] as [String; 0]);
}
#[test]
fn the_readme_configuration_table_is_the_tables() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (before, rest) = readme
        .split_once(START)
        .unwrap_or_else(|| panic!("README.md has no line {START}"));
    let (current, after) = rest
        .split_once(END)
        .unwrap_or_else(|| panic!("README.md has no line {END} after the start marker"));
    let expected = format!("\n{}", markdown_table(properties()));
    if current == expected {
        return;
    }
    if std::env::var_os("KCON_WRITE_README").is_some() {
        std::fs::write(&path, format!("{before}{START}{expected}{END}{after}"))
            .expect("README.md written");
        return;
    }
    panic!(
        "README.md's configuration table is not the property tables'; run \
         KCON_WRITE_README=1 cargo test -p kcon-cli --test readme, or put this between \
         the markers:\n{expected}"
    );
}
