//! Property tests over what an upstream index sends: PEP 503 HTML and PEP 691 JSON pages of any shape. No
//! panic, output bounded by input, and nothing but `http(s)` links survives into a page wharf renders.

use proptest::prelude::*;
use url::Url;

use crate::{html, json};

fn text(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(pieces).prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|parts| parts.concat())
}

const HTML_PIECES: &[&str] = &[
    "<a",
    "<A",
    " href=",
    "href=\"",
    "\"",
    "'",
    ">",
    "</a>",
    "<abbr>",
    "<",
    "=",
    " ",
    "\n",
    "&amp;",
    "&#x3c;",
    "&#99999999;",
    "&",
    ";",
    "#sha256=",
    "#",
    "demo-1.0.whl",
    "x.tar.gz",
    "javascript:",
    "data:",
    "http://",
    "https://h/",
    "../",
    "/",
    "data-yanked",
    "data-core-metadata=",
    "data-requires-python=",
    "true",
    "sha256=",
];
const JSON_PIECES: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\"files\"",
    "\"filename\"",
    "\"url\"",
    "\"hashes\"",
    "\"yanked\"",
    "\"projects\"",
    "\"name\"",
    "\"core-metadata\"",
    "true",
    "false",
    "null",
    "1",
    "\"x.whl\"",
    "\"javascript:alert(1)\"",
    "\"https://h/x.whl\"",
    "\"sha256\"",
    "\"ab\"",
    " ",
];

fn base() -> Url {
    Url::parse("http://up.example/simple/demo/").expect("base")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn html_pages_of_any_shape(page in text(HTML_PIECES, 80)) {
        let anchors = page.to_ascii_lowercase().matches("<a").count();
        let project = html::parse_project(&page, "demo", &base());
        prop_assert!(project.files.len() <= anchors);
        for f in &project.files {
            prop_assert!(matches!(f.url.scheme(), "http" | "https"));
            prop_assert!(crate::name::is_valid_filename(&f.filename));
        }
        let rendered = html::render_project(&project, |f| format!("../../files/demo/{}", f.filename));
        prop_assert!(!rendered.to_ascii_lowercase().contains("javascript:"));
        prop_assert!(rendered.len() <= 256 + project.files.len() * (128 + 16 * page.len()));
        let root = html::parse_root(&page);
        prop_assert!(root.projects.len() <= anchors);
        prop_assert!(root.projects.iter().all(|p| crate::name::is_valid_project(p)));
    }

    #[test]
    fn json_pages_of_any_shape(doc in text(JSON_PIECES, 80)) {
        if let Ok(project) = json::parse_project(doc.as_bytes(), "demo", &base()) {
            prop_assert!(project.files.len() <= doc.matches("\"filename\"").count());
            for f in &project.files {
                prop_assert!(matches!(f.url.scheme(), "http" | "https"));
            }
            let rendered = json::render_project(&project, |f| f.filename.clone());
            prop_assert!(serde_json::from_str::<serde_json::Value>(&rendered).is_ok());
        }
        if let Ok(root) = json::parse_root(doc.as_bytes()) {
            prop_assert!(root.projects.len() <= doc.matches("\"name\"").count());
        }
    }

    #[test]
    fn structured_json_files_keep_only_usable_links(
        files in prop::collection::vec((text(&["demo", "-1.0", ".whl", "/", "<", "%"], 6), text(&["https://h/", "javascript:", "data:,", "x.whl", "../", "//evil/"], 4)), 0..20)
    ) {
        let listed: Vec<serde_json::Value> = files
            .iter()
            .map(|(name, url)| serde_json::json!({"filename": name, "url": url, "hashes": {}}))
            .collect();
        let doc = serde_json::json!({"name": "demo", "files": listed}).to_string();
        let project = json::parse_project(doc.as_bytes(), "demo", &base()).expect("a valid document");
        prop_assert!(project.files.len() <= files.len());
        for f in &project.files {
            prop_assert!(matches!(f.url.scheme(), "http" | "https"));
            prop_assert!(crate::name::is_valid_filename(&f.filename));
        }
    }
}
