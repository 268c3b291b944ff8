//! Property tests over the config loader: YAML text of any shape (brackets, anchors, merge keys, tabs, keys
//! wharf knows) is a config or a list of errors, never a panic, and the errors are bounded by the input.

use proptest::prelude::*;

use crate::{parse_repo_flag, Config};

fn text(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => prop::sample::select(pieces).prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|parts| parts.concat())
}

const YAML_PIECES: &[&str] = &[
    "\n",
    "  ",
    "- ",
    ": ",
    ":",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "<<: ",
    "!tag ",
    "\t",
    "---\n",
    "|\n",
    "repositories",
    "pypi",
    "format",
    "upstream",
    "http://h/simple/",
    "listen",
    ":8080",
    "storage",
    "max_size",
    "1GiB",
    "admin",
    "token_file",
    "metadata_ttl",
    "10m",
    "file_hosts",
    "null",
    "true",
    "1",
    "-1",
    "1e400",
    "x",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_yaml_is_a_config_or_errors(yaml in text(YAML_PIECES, 60)) {
        if let Err(errors) = Config::from_yaml_str(&yaml, crate::fixture::FORMATS) {
            prop_assert!(!errors.0.is_empty());
            prop_assert!(errors.0.len() <= yaml.len() + 1, "{} errors for {} bytes", errors.0.len(), yaml.len());
            for error in &errors.0 {
                prop_assert!(error.message.len() <= 4 * yaml.len() + 512);
            }
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_parsing(depth in 65usize..5000, open in prop::sample::select(&["[", "{", "- ", "[ "][..])) {
        let yaml = format!("repositories: {}", open.repeat(depth));
        let errors = Config::from_yaml_str(&yaml, crate::fixture::FORMATS).expect_err("too deep");
        prop_assert!(errors.0[0].message.contains("levels deep"), "{}", errors.0[0].message);
    }

    #[test]
    fn repo_flags_never_echo_credentials(flag in text(&["p", "=", "pypi", "oci", "+", "http://", "https://", "alice:SECRET@", "h", ":99999", "/simple/", ",", "a=", " "], 16)) {
        if let Err(message) = parse_repo_flag(&flag, crate::fixture::FORMATS) {
            prop_assert!(!message.contains("SECRET"), "{flag:?}: {message}");
        }
    }
}
