//! The rule that turns a connector folder name into the name used in URLs and config.

/// Lower-cases `folder` and turns every run of characters other than `a-z` and `0-9` into
/// one `-`, trimming dashes at both ends: `"Revizto (Ireland)"` → `"revizto-ireland"`.
/// An input with no letter or digit at all gives `"connector"`.
pub fn connector_name(folder: &str) -> String {
    let mut out = String::with_capacity(folder.len());
    let mut dash = false;
    for c in folder.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c);
        } else {
            dash = true;
        }
    }
    if out.is_empty() {
        out.push_str("connector");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::connector_name;

    #[test]
    fn folds_case_and_runs_of_other_characters() {
        assert_eq!(connector_name("Revizto (Ireland)"), "revizto-ireland");
        assert_eq!(connector_name("IA-Connect Session"), "ia-connect-session");
        assert_eq!(
            connector_name("Easyvista_Service._Manager"),
            "easyvista-service-manager"
        );
        assert_eq!(connector_name("1Me Corporate"), "1me-corporate");
        assert_eq!(connector_name("Zürich"), "z-rich");
        assert_eq!(connector_name("(())"), "connector");
    }
}
