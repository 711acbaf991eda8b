//! The README's configuration table is the registry's: this test fails, showing the expected
//! table, when they differ. `KCON_WRITE_README=1` makes it rewrite the README instead.

use std::path::Path;

use kcon_core::property::registry::markdown_table;

const START: &str = "<!-- properties: generated from kcon-core's property registry; \
                     rewrite with KCON_WRITE_README=1 cargo test -p kcon-core --test readme -->";
const END: &str = "<!-- end of properties -->";

#[test]
fn the_readme_configuration_table_is_the_registrys() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (before, rest) = readme
        .split_once(START)
        .unwrap_or_else(|| panic!("README.md has no line {START}"));
    let (current, after) = rest
        .split_once(END)
        .unwrap_or_else(|| panic!("README.md has no line {END} after the start marker"));
    let expected = format!("\n{}", markdown_table());
    if current == expected {
        return;
    }
    if std::env::var_os("KCON_WRITE_README").is_some() {
        std::fs::write(&path, format!("{before}{START}{expected}{END}{after}"))
            .expect("README.md written");
        return;
    }
    panic!(
        "README.md's configuration table is not the registry's; run \
         KCON_WRITE_README=1 cargo test -p kcon-core --test readme, or put this between \
         the markers:\n{expected}"
    );
}
