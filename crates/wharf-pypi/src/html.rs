//! PEP 503 HTML: reading upstream's anchors and writing our own pages.
//!
//! The reader is a small anchor scanner, not a general HTML parser: Simple API pages are flat lists of `<a>`
//! elements, and the scanner only has to be robust against attribute order, quoting styles, entities and
//! unrelated markup around them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use url::Url;

use crate::model::{is_usable_link, parse_hash_spec, FileLink, ProjectPage, RootPage};
use crate::name::is_valid_project;

/// Attribute name (lower case) and decoded value (`None` for a bare attribute such as `data-yanked`).
type Attrs = Vec<(String, Option<String>)>;

/// An `<a>` element: its attributes (lower-case names, decoded values) and decoded text.
#[derive(Debug, Default)]
struct Anchor {
    attrs: Attrs,
    text: String,
}

impl Anchor {
    fn attr(&self, name: &str) -> Option<Option<&str>> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }
}

fn anchors(html: &str) -> Vec<Anchor> {
    let mut out = Vec::new();
    let lower = html.to_ascii_lowercase();
    let mut pos = 0;
    while let Some(found) = lower[pos..].find("<a") {
        let start = pos + found;
        let after = start + 2;
        // `<a` must be followed by whitespace or `>` (not `<abbr>`).
        if !lower[after..].starts_with(|c: char| c.is_ascii_whitespace() || c == '>') {
            pos = after;
            continue;
        }
        let Some((attrs, tag_end)) = parse_attrs(html, after) else {
            break;
        };
        let text_end = lower[tag_end..]
            .find("</a")
            .map_or(html.len(), |i| tag_end + i);
        let text = strip_tags(&html[tag_end..text_end]);
        out.push(Anchor {
            attrs,
            text: decode_entities(text.trim()),
        });
        pos = text_end.max(tag_end);
    }
    out
}

/// Parses attributes from `pos` up to the closing `>`; returns them and the index after `>`.
fn parse_attrs(html: &str, mut pos: usize) -> Option<(Attrs, usize)> {
    let bytes = html.as_bytes();
    let mut attrs = Vec::new();
    loop {
        while pos < bytes.len() && (bytes[pos].is_ascii_whitespace() || bytes[pos] == b'/') {
            pos += 1;
        }
        if pos >= bytes.len() {
            return None;
        }
        if bytes[pos] == b'>' {
            return Some((attrs, pos + 1));
        }
        let name_start = pos;
        while pos < bytes.len()
            && !bytes[pos].is_ascii_whitespace()
            && !matches!(bytes[pos], b'=' | b'>' | b'/')
        {
            pos += 1;
        }
        let name = html[name_start..pos].to_ascii_lowercase();
        while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pos < bytes.len() && bytes[pos] == b'=' {
            pos += 1;
            while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
                pos += 1;
            }
            let value = if pos < bytes.len() && (bytes[pos] == b'"' || bytes[pos] == b'\'') {
                let quote = bytes[pos];
                let start = pos + 1;
                let end = html[start..].find(quote as char).map(|i| start + i)?;
                pos = end + 1;
                &html[start..end]
            } else {
                let start = pos;
                while pos < bytes.len() && !bytes[pos].is_ascii_whitespace() && bytes[pos] != b'>' {
                    pos += 1;
                }
                &html[start..pos]
            };
            attrs.push((name, Some(decode_entities(value))));
        } else if !name.is_empty() {
            attrs.push((name, None));
        }
    }
}

fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Decodes the named entities Simple pages use and all numeric ones.
pub(crate) fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        // Bytes, not a string slice: the 12th byte may fall inside a multi-byte character.
        let Some(semi) = rest.bytes().take(12).position(|b| b == b';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Reads a project page. Links are resolved against `base` (the page's URL); anchors whose URL cannot be
/// resolved, is not `http(s)`, or whose file name wharf could not serve are skipped.
pub fn parse_project(html: &str, name: &str, base: &Url) -> ProjectPage {
    let mut files = Vec::new();
    for a in anchors(html) {
        let Some(Some(href)) = a.attr("href") else {
            continue;
        };
        let Ok(mut url) = base.join(href) else {
            continue;
        };
        let hashes = url.fragment().map(parse_hash_spec).unwrap_or_default();
        url.set_fragment(None);
        let filename = if a.text.is_empty() {
            url.path_segments()
                .and_then(|mut s| s.next_back())
                .unwrap_or_default()
                .to_string()
        } else {
            a.text.clone()
        };
        if !is_usable_link(&url, &filename) {
            continue;
        }
        let core_metadata = a
            .attr("data-core-metadata")
            .or_else(|| a.attr("data-dist-info-metadata"))
            .and_then(|v| match v {
                None | Some("true") => Some(BTreeMap::new()),
                Some("false") => None,
                Some(spec) => Some(parse_hash_spec(spec)),
            });
        files.push(FileLink {
            filename,
            url,
            hashes,
            requires_python: a
                .attr("data-requires-python")
                .flatten()
                .map(str::to_string)
                .filter(|s| !s.is_empty()),
            yanked: a.attr("data-yanked").map(|v| v.unwrap_or("").to_string()),
            core_metadata,
            size: None,
            upload_time: None,
        });
    }
    ProjectPage {
        name: name.to_string(),
        versions: None,
        files,
    }
}

/// Reads the root index: the names of its anchors that are valid project names (anything else could not be
/// a link on wharf's page, and `javascript:x` would be one).
pub fn parse_root(html: &str) -> RootPage {
    RootPage {
        projects: anchors(html)
            .into_iter()
            .map(|a| a.text)
            .filter(|t| is_valid_project(t))
            .collect(),
    }
}

fn hash_attr(hashes: &BTreeMap<String, String>) -> String {
    // Prefer sha256 as the one hash named in attributes and fragments.
    hashes
        .get_key_value("sha256")
        .or_else(|| hashes.iter().next())
        .map(|(k, v)| format!("{k}={v}"))
        .unwrap_or_else(|| "true".to_string())
}

/// Renders a project page whose file links point at `link(file)` (relative URLs).
pub fn render_project(page: &ProjectPage, link: impl Fn(&FileLink) -> String) -> String {
    let mut out = String::with_capacity(256 + page.files.len() * 200);
    let name = escape(&page.name);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html>\n<head>\n<meta name=\"pypi:repository-version\" content=\"1.1\">\n\
         <title>Links for {name}</title>\n</head>\n<body>\n<h1>Links for {name}</h1>\n"
    );
    for f in &page.files {
        let mut href = link(f);
        if let Some((k, v)) = f
            .hashes
            .get_key_value("sha256")
            .or_else(|| f.hashes.iter().next())
        {
            let _ = write!(href, "#{k}={v}");
        }
        let _ = write!(out, "<a href=\"{}\"", escape(&href));
        if let Some(rp) = &f.requires_python {
            let _ = write!(out, " data-requires-python=\"{}\"", escape(rp));
        }
        if let Some(reason) = &f.yanked {
            let _ = write!(out, " data-yanked=\"{}\"", escape(reason));
        }
        if let Some(meta) = &f.core_metadata {
            let spec = escape(&hash_attr(meta));
            let _ = write!(
                out,
                " data-dist-info-metadata=\"{spec}\" data-core-metadata=\"{spec}\""
            );
        }
        let _ = writeln!(out, ">{}</a><br/>", escape(&f.filename));
    }
    out.push_str("</body>\n</html>\n");
    out
}

pub fn render_root(root: &RootPage, link: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(128 + root.projects.len() * 64);
    out.push_str(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta name=\"pypi:repository-version\" content=\"1.1\">\n\
         <title>Simple index</title>\n</head>\n<body>\n",
    );
    for p in &root.projects {
        let _ = writeln!(
            out,
            "<a href=\"{}\">{}</a><br/>",
            escape(&link(p)),
            escape(p)
        );
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pep503_anchors_with_all_attributes() {
        let base = Url::parse("http://up.example/simple/demo/").unwrap();
        let html = r#"<!DOCTYPE html><html><body>
          <a href="../../files/demo-1.0-py3-none-any.whl#sha256=ABCD" data-requires-python="&gt;=3.8"
             data-dist-info-metadata="sha256=1111" data-core-metadata="sha256=2222">demo-1.0-py3-none-any.whl</a><br/>
          <A HREF='https://files.example/x/demo-0.9.tar.gz' data-yanked>demo-0.9.tar.gz</A>
          <abbr>not a link</abbr>
        </body></html>"#;
        let page = parse_project(html, "demo", &base);
        assert_eq!(page.files.len(), 2);
        let wheel = &page.files[0];
        assert_eq!(
            wheel.url.as_str(),
            "http://up.example/files/demo-1.0-py3-none-any.whl"
        );
        assert_eq!(wheel.hashes.get("sha256").map(String::as_str), Some("abcd"));
        assert_eq!(wheel.requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(
            wheel
                .core_metadata
                .as_ref()
                .and_then(|m| m.get("sha256"))
                .map(String::as_str),
            Some("2222")
        );
        assert_eq!(wheel.yanked, None);
        let sdist = &page.files[1];
        assert_eq!(sdist.url.host_str(), Some("files.example"));
        assert_eq!(sdist.yanked.as_deref(), Some(""));
        assert!(sdist.core_metadata.is_none());
    }

    #[test]
    fn rendering_round_trips_through_the_reader() {
        let base = Url::parse("http://up.example/simple/demo/").unwrap();
        let html = r#"<a href="/f/demo-1.0.whl#sha256=aa" data-requires-python="&lt;4,&gt;=3.8" data-yanked="bad &amp; broken" data-core-metadata="sha256=bb">demo-1.0.whl</a>"#;
        let page = parse_project(html, "demo", &base);
        let ours = render_project(&page, |f| format!("../../files/demo/{}", f.filename));
        let again = parse_project(
            &ours,
            "demo",
            &Url::parse("http://wharf.example/pypi/simple/demo/").unwrap(),
        );
        let f = &again.files[0];
        assert_eq!(
            f.url.as_str(),
            "http://wharf.example/pypi/files/demo/demo-1.0.whl"
        );
        assert_eq!(f.requires_python.as_deref(), Some("<4,>=3.8"));
        assert_eq!(f.yanked.as_deref(), Some("bad & broken"));
        assert_eq!(f.hashes, page.files[0].hashes);
        assert_eq!(f.core_metadata, page.files[0].core_metadata);
    }

    #[test]
    fn links_a_browser_would_act_on_are_dropped() {
        let base = Url::parse("http://up.example/simple/demo/").unwrap();
        let html = r#"<a href="javascript:alert(1)">demo-1.0.whl</a>
          <a href="JaVaScRiPt:alert(1)//x.whl">demo-1.1.whl</a>
          <a href="data:text/html,<script>alert(1)</script>">demo-1.2.whl</a>
          <a href="vbscript:x">demo-1.3.whl</a>
          <a href="../../f/demo-1.4.whl">demo-1.4.whl</a>
          <a href="../../f/x">"><script>alert(1)</script></a>"#;
        let page = parse_project(html, "demo", &base);
        let names: Vec<&str> = page.files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(names, ["demo-1.4.whl"]);
        let root = parse_root(
            r#"<a href="/simple/ok/">ok</a><a href="javascript:alert(1)">javascript:alert(1)</a>
               <a href="x">&lt;script&gt;</a><a href="y"></a>"#,
        );
        assert_eq!(root.projects, ["ok"]);
        let rendered = render_root(&root, |p| format!("{p}/"));
        assert!(!rendered.contains("javascript"), "{rendered}");
    }

    #[test]
    fn entities() {
        assert_eq!(
            decode_entities("a&lt;b&#62;c&#x26;d&bogus;"),
            "a<b>c&d&bogus;"
        );
    }
}
